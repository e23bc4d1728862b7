"""File checks of the tools: one module, one-line errors.

Each check turns a user's mistake about a file (missing, unreadable, a broken
config or one of its ``_base_`` files, a weight file a config names that is not
there) into a :class:`~semillie_mm.utils.cli.UserError` that names the file and
the fix. Checkpoint files are checked by
:func:`semillie_mm.utils.checkpoint.check_checkpoint` (re-exported here), which
reads only their header so the load that follows reads them once.

Nothing heavy is imported at import time (mmengine inside the functions).
"""
import ast
import os
import os.path as osp

from .cli import UserError, _one_line


def require_file(path, what: str, hint: str = '') -> str:
    """Check that ``path`` is a readable file.

    Args:
        path (str | os.PathLike): the file.
        what (str): what it is, e.g. ``'config'`` or ``'RAM weights'``.
        hint (str): the fix, appended to the message (e.g. how to get it).

    Returns:
        str: ``path`` as a string, ``~`` expanded.

    Raises:
        UserError: if the path is empty, missing, a directory or unreadable.
    """
    if path is None or str(path) == '':
        raise UserError(f'no {what} given' + (f'; {hint}' if hint else ''))
    path = osp.expanduser(os.fspath(path))
    tail = f'; {hint}' if hint else ''
    if not osp.exists(path):
        raise UserError(f'{what} {path} does not exist{tail}')
    if osp.isdir(path):
        raise UserError(f'{what} {path} is a directory, expected a file{tail}')
    if not os.access(path, os.R_OK):
        raise UserError(f'{what} {path} is not readable (check its '
                        f'permissions){tail}')
    try:
        with open(path, 'rb') as f:
            f.read(1)
    except OSError as err:
        raise UserError(f'{what} {path} cannot be read '
                        f'({err.strerror or err}){tail}') from err
    return path


def require_dir(path, what: str, hint: str = '') -> str:
    """Check that ``path`` is an existing folder.

    Args:
        path (str | os.PathLike): the folder.
        what (str): what it is, e.g. ``'VisDrone root'``.
        hint (str): the fix, appended to the message.

    Returns:
        str: ``path`` as a string, ``~`` expanded.

    Raises:
        UserError: if it is missing or not a folder.
    """
    tail = f'; {hint}' if hint else ''
    if path is None or str(path) == '':
        raise UserError(f'no {what} given{tail}')
    path = osp.expanduser(os.fspath(path))
    if not osp.exists(path):
        raise UserError(f'{what} {path} does not exist{tail}')
    if not osp.isdir(path):
        raise UserError(f'{what} {path} is not a folder{tail}')
    return path


def _syntax_error_of(path: str):
    """The first syntax error of a Python file, or None."""
    try:
        with open(path, encoding='utf-8') as f:
            ast.parse(f.read(), filename=path)
    except SyntaxError as err:
        return err
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return None


def _base_files(path: str):
    """The local ``_base_`` files a Python config names (read with ast)."""
    try:
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_'
                for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []
            names = [value] if isinstance(value, str) else list(value)
            return [
                osp.normpath(osp.join(osp.dirname(path), n)) for n in names
                if isinstance(n, str) and '::' not in n
            ]
    return []


def _find_syntax_error(path: str, seen=None):
    """``(file, SyntaxError)`` of the first broken file among ``path`` and
    its ``_base_`` files, recursively; None if all parse."""
    seen = set() if seen is None else seen
    if path in seen or not osp.isfile(path):
        return None
    seen.add(path)
    if path.endswith('.py'):
        err = _syntax_error_of(path)
        if err is not None:
            return path, err
    for base in _base_files(path):
        found = _find_syntax_error(base, seen)
        if found is not None:
            return found
    return None


def load_config(path):
    """Load an mmengine config, turning a user's mistake into a UserError.

    Args:
        path (str | os.PathLike): the config file.

    Returns:
        mmengine.Config: the loaded config.

    Raises:
        UserError: if the config (or one of its ``_base_`` files) is missing,
            unreadable, or has a syntax error (the message names the file and
            the line).
    """
    path = require_file(path, 'config', 'pass the path of a config file, '
                        'e.g. configs/semillie_demo.py')
    if path.endswith('.py'):
        err = _syntax_error_of(path)
        if err is not None:
            raise UserError(f'config {path} line {err.lineno}: syntax error '
                            f'({err.msg}); fix that line')
    from mmengine.config import Config
    try:
        return Config.fromfile(path)
    except SyntaxError as err:
        # a _base_ file of the config: mmengine's message does not say which
        found = _find_syntax_error(path)
        if found is None:
            raise UserError(f'config {path}: syntax error in it or in one of '
                            f'its _base_ files ({_one_line(err)})') from err
        bad, inner = found
        raise UserError(f'config {bad} line {inner.lineno}: syntax error '
                        f'({inner.msg}; used by {path}); fix that line'
                        ) from err
    except FileNotFoundError as err:
        missing = getattr(err, 'filename', None) or _one_line(err)
        raise UserError(f'config {path} refers to a file that does not '
                        f'exist: {missing}; fix its _base_ path') from err
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as err:
        raise UserError(f'config {path} cannot be read '
                        f'({_one_line(err)})') from err


def _is_url(path: str) -> bool:
    return '://' in path


#: keys of a config whose string values are local weight files
_WEIGHT_HINTS = {
    'ram': 'download RAM\'s ram_swin_large_14m.pth (README, "Weights") and '
    'put it there, or point {key} at it with --cfg-options {key}=PATH',
    'inception_path': 'download pt_inception-2015-12-05-6726825d.pth (see '
    'docs/metrics.md, FID) and put it there, or point {key} at it with '
    '--cfg-options',
    'pretrained': 'put the weight file there or point {key} at it with '
    '--cfg-options {key}=PATH',
}


def _walk(node, prefix):
    """Yield ``(dotted_key, dict)`` for every dict inside a config part."""
    if isinstance(node, dict):
        yield prefix, node
        for key, value in node.items():
            yield from _walk(value, f'{prefix}.{key}' if prefix else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _walk(value, f'{prefix}.{i}')


def check_config_files(cfg, sections, config_path: str = 'the config'):
    """Check the local weight files a config names, before anything is built.

    Looks in ``cfg[section]`` for each section for: ``pretrained='PATH'``
    (e.g. RAM's weights), ``init_cfg=dict(type='Pretrained',
    checkpoint='PATH')`` and ``inception_path='PATH'`` (FID); URLs
    (``scheme://``) are skipped, ``None`` means "no weights" except for
    ``ReferenceFID``, which needs its Inception file.

    Args:
        cfg (mmengine.Config | dict): the loaded config.
        sections (sequence[str]): top-level keys to look in, e.g.
            ``('model', 'val_evaluator')``.
        config_path (str): the config's file name, for the messages.

    Raises:
        UserError: naming the key, the file and what to do.
    """
    for section in sections:
        part = cfg.get(section, None) if hasattr(cfg, 'get') else None
        if part is None:
            continue
        for dotted, node in _walk(part, section):
            items = []
            value = node.get('pretrained')
            if isinstance(value, str) and not _is_url(value):
                hint = 'ram' if 'ram' in dotted.lower() or 'ram' in \
                    str(node.get('type', '')).lower() else 'pretrained'
                items.append((f'{dotted}.pretrained', value, hint))
            if str(node.get('type', '')).lower() == 'pretrained':
                value = node.get('checkpoint')
                if isinstance(value, str) and not _is_url(value):
                    items.append((f'{dotted}.checkpoint', value, 'pretrained'))
            if 'inception_path' in node or node.get('type') == 'ReferenceFID':
                value = node.get('inception_path')
                key = f'{dotted}.inception_path'
                if value is None and node.get('type') == 'ReferenceFID':
                    raise UserError(
                        f'{config_path}: {key} is not set; FID needs the '
                        'Inception weights as a local file: ' +
                        _WEIGHT_HINTS['inception_path'].format(key=key))
                if isinstance(value, str) and not _is_url(value):
                    items.append((key, value, 'inception_path'))
            for key, path, hint in items:
                require_file(path, f'{config_path}: {key} =',
                             _WEIGHT_HINTS[hint].format(key=key))


from .checkpoint import check_checkpoint  # noqa: E402,F401
