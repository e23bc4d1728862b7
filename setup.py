"""Install semillie-mm: ``pip install -e .`` (tools/setup_env.sh sets up the whole stack)."""
import os.path as osp

from setuptools import find_packages, setup


def parse_requirements(fname):
    """Read a requirements file, dropping comments and blank lines.

    Args:
        fname (str): path relative to this file.

    Returns:
        list[str]: requirement specifiers.
    """
    path = osp.join(osp.dirname(osp.abspath(__file__)), fname)
    reqs = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                reqs.append(line)
    return reqs


def get_version():
    """Return ``__version__`` from ``semillie_mm/version.py``."""
    scope = {}
    with open(osp.join('semillie_mm', 'version.py'), encoding='utf-8') as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


setup(
    name='semillie-mm',
    version=get_version(),
    description='Semi-LLIE: semi-supervised low-light image enhancement '
    '(Mamba backbone, RAM losses, mean teacher) as an OpenMMLab plugin',
    long_description=open('README.md', encoding='utf-8').read()
    if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    include_package_data=True,
    # the shipped model (semillie_mm/apis/pretrained.py): config, weights and
    # model card; the detection study's mmdet configs
    package_data={'semillie_mm.pretrained': ['*.py', '*.pth', '*.md'],
                  'semillie_mm.detection.configs': ['*.py']},
    python_requires='>=3.9',
    license='Apache License 2.0',
    install_requires=parse_requirements('requirements/runtime.txt'),
    extras_require={
        'mim': parse_requirements('requirements/mminstall.txt'),
        'tests': parse_requirements('requirements/tests.txt'),
        'cuda': parse_requirements('requirements/optional.txt'),
    },
    zip_safe=False,
)
