"""tools/audit_offline.py: pinned versions against OSV advisories in the
PyPA advisory database's layout (vulns/<package>/<id>.yaml)."""
import importlib.util
import os.path as osp

import yaml


def _tool():
    path = osp.join(osp.dirname(__file__), '..', '..', 'tools',
                    'audit_offline.py')
    spec = importlib.util.spec_from_file_location('audit_offline', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _advisory(db, package, id_, events, versions=(), withdrawn=None):
    folder = db / package
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        'id':
        id_,
        'details':
        f'{id_} details\nmore',
        'aliases': [f'CVE-{id_}'],
        'affected': [{
            'package': {
                'name': package,
                'ecosystem': 'PyPI'
            },
            'ranges': [{
                'type': 'ECOSYSTEM',
                'events': events
            }, {
                'type': 'GIT',
                'repo': 'x',
                'events': [{
                    'introduced': '0'
                }, {
                    'fixed': 'abc123'
                }]
            }],
            'versions':
            list(versions)
        }]
    }
    if withdrawn:
        doc['withdrawn'] = withdrawn
    (folder / f'{id_}.yaml').write_text(yaml.safe_dump(doc))


def test_findings_ranges_and_ignores(tmp_path, capsys):
    tool = _tool()
    db = tmp_path / 'vulns'
    _advisory(db, 'Some_Pkg', 'PYSEC-1', [{
        'introduced': '0'
    }, {
        'fixed': '2.0'
    }])
    _advisory(db, 'some-pkg', 'PYSEC-2', [{
        'introduced': '1.5'
    }, {
        'last_affected': '1.9'
    }])
    _advisory(db,
              'other',
              'PYSEC-3', [{
                  'introduced': '0'
              }],
              withdrawn='2024-01-01T00:00:00Z')
    _advisory(db, 'listed', 'PYSEC-4', [], versions=['0.1.dev1'])
    req = tmp_path / 'frozen.txt'
    req.write_text('# comment\nsome.pkg==1.9\nother==1.0\nlisted==0.1.dev1\n'
                   'fine==3.0\nunpinned>=1\n')
    pins = tool.read_pins(str(req))
    assert pins == {
        'some-pkg': '1.9',
        'other': '1.0',
        'listed': '0.1.dev1',
        'fine': '3.0'
    }
    found = tool.audit(pins, str(db))
    assert [(f['name'], f['id']) for f in found] == [('listed', 'PYSEC-4'),
                                                     ('some-pkg', 'PYSEC-1'),
                                                     ('some-pkg', 'PYSEC-2')]
    assert found[1]['fixed'] == ['2.0']  # the GIT range's hash is not listed
    assert tool.audit({'some-pkg': '2.0'}, str(db)) == []
    assert [f['id']
            for f in tool.audit({'some-pkg': '1.4'}, str(db))] == ['PYSEC-1']
    assert tool.main(['-r', str(req), '--db', str(db)]) == 1
    assert tool.main([
        '-r',
        str(req), '--db',
        str(db), '--ignore-vuln', 'PYSEC-1', '--ignore-vuln', 'CVE-PYSEC-2',
        '--ignore-vuln', 'PYSEC-4'
    ]) == 0
    out = capsys.readouterr().out
    assert '4 pins audited, 3 findings, 0 not accepted' in out
