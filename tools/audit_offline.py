# Copyright (c) semillie-mm contributors. All rights reserved.
"""Match pinned requirements against a local copy of the PyPA advisory
database (https://github.com/pypa/advisory-database, OSV YAML files under
``vulns/<package>/``): the offline stand-in for ``pip-audit`` where neither
of its vulnerability services (the PyPI JSON API, OSV) can be reached.

The PyPA database is the data behind PyPI's own vulnerability reports, which
``pip-audit -s pypi`` reads. A finding is a pinned version listed in an
advisory's ``versions`` or inside one of its ``ECOSYSTEM`` ranges
(``introduced`` <= version < ``fixed``, or <= ``last_affected``); withdrawn
advisories are skipped. ``tools/audit_requirements.sh --offline-db DIR``
runs it.

Usage:
    python tools/audit_offline.py -r frozen.txt --db advisory-database/vulns \
        [--ignore-vuln PYSEC-...]

Exit status: 0 when nothing but ignored findings remain, 1 otherwise.
"""
import argparse
import os
import re
import sys

import yaml
from packaging.version import InvalidVersion, Version


def normalize(name: str) -> str:
    """PEP 503 name normalization.

    Args:
        name (str): a distribution name.

    Returns:
        str: lower case, runs of ``-_.`` as one ``-``.
    """
    return re.sub(r'[-_.]+', '-', name).lower()


def read_pins(path: str) -> dict[str, str]:
    """``name==version`` lines of a requirements file (others ignored).

    Args:
        path (str): requirements file (e.g. ``pip freeze`` output).

    Returns:
        dict: normalized name -> version.
    """
    pins = {}
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            m = re.match(
                r'^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*'
                r'([^\s;]+)', line)
            if m:
                pins[normalize(m.group(1))] = m.group(3)
    return pins


def _in_range(version: Version, events: list[dict]) -> bool:
    affected = False
    for ev in events:  # OSV: events in order; introduced opens, fixed closes
        try:
            if 'introduced' in ev:
                if ev['introduced'] == '0' or version >= Version(
                        str(ev['introduced'])):
                    affected = True
            elif 'fixed' in ev:
                affected = affected and version < Version(str(ev['fixed']))
            elif 'last_affected' in ev:
                affected = affected and version <= Version(
                    str(ev['last_affected']))
        except InvalidVersion:
            continue
    return affected


def affects(advisory: dict, name: str, version: str) -> bool:
    """Whether an OSV advisory covers ``name==version``.

    Args:
        advisory (dict): the parsed OSV document.
        name (str): normalized package name.
        version (str): the pinned version.

    Returns:
        bool
    """
    if advisory.get('withdrawn'):
        return False
    try:
        v = Version(version)
    except InvalidVersion:
        v = None
    for aff in advisory.get('affected', []):
        pkg = aff.get('package', {})
        if pkg.get('ecosystem') != 'PyPI' or normalize(pkg.get('name',
                                                               '')) != name:
            continue
        if version in [str(x) for x in aff.get('versions', [])]:
            return True
        if v is None:
            continue
        for rng in aff.get('ranges', []):
            if rng.get('type') == 'ECOSYSTEM' and _in_range(
                    v, rng.get('events', [])):
                return True
    return False


def fixed_versions(advisory: dict, name: str) -> list[str]:
    """The ``fixed`` versions an advisory names for a package."""
    out = []
    for aff in advisory.get('affected', []):
        if normalize(aff.get('package', {}).get('name', '')) != name:
            continue
        for rng in aff.get('ranges', []):
            if rng.get('type') == 'ECOSYSTEM':  # not GIT commit hashes
                out += [
                    str(e['fixed']) for e in rng.get('events', [])
                    if 'fixed' in e
                ]
    return out


def audit(pins: dict[str, str], db: str) -> list[dict]:
    """Findings of ``pins`` in the advisory folder ``db``.

    Args:
        pins (dict): normalized name -> version.
        db (str): the database's ``vulns`` folder (one folder per package).

    Returns:
        list[dict]: ``name, version, id, aliases, fixed, summary`` per
        finding, sorted by name and id.
    """
    files = {}  # normalized name -> advisory files (folders may differ in
    for d in sorted(os.listdir(db)):  # spelling: Some_Pkg, some-pkg)
        folder = os.path.join(db, d)
        if os.path.isdir(folder):
            files.setdefault(normalize(d), []).extend(
                os.path.join(folder, f) for f in sorted(os.listdir(folder))
                if f.endswith(('.yaml', '.yml')))
    findings = []
    for name, version in sorted(pins.items()):
        for path in files.get(name, []):
            with open(path) as f:
                adv = yaml.safe_load(f)
            if not affects(adv, name, version):
                continue
            text = (adv.get('summary') or adv.get('details') or '').strip()
            findings.append({
                'name':
                name,
                'version':
                version,
                'id':
                adv['id'],
                'aliases':
                adv.get('aliases', []),
                'fixed':
                fixed_versions(adv, name),
                'summary':
                text.splitlines()[0][:160] if text else ''
            })
    return findings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description='Audit name==version pins against a local PyPA advisory '
        'database (offline pip-audit).')
    parser.add_argument('-r',
                        '--requirement',
                        required=True,
                        help='requirements file with name==version pins')
    parser.add_argument('--db',
                        required=True,
                        help="the advisory database's vulns/ folder")
    parser.add_argument('--ignore-vuln',
                        action='append',
                        default=[],
                        metavar='ID',
                        help='accepted finding (repeatable)')
    args = parser.parse_args(argv)
    pins = read_pins(args.requirement)
    findings = audit(pins, args.db)
    open_ = 0
    for f in findings:
        ignored = f['id'] in args.ignore_vuln or any(a in args.ignore_vuln
                                                     for a in f['aliases'])
        open_ += not ignored
        print(f"{f['name']}=={f['version']}  {f['id']}"
              f"{' (' + ', '.join(f['aliases']) + ')' if f['aliases'] else ''}"
              f"  fixed in: {', '.join(f['fixed']) or '-'}"
              f"{'  [accepted]' if ignored else ''}\n    {f['summary']}")
    print(f'{len(pins)} pins audited, {len(findings)} findings, '
          f'{open_} not accepted')
    return 1 if open_ else 0


if __name__ == '__main__':
    sys.exit(main())
