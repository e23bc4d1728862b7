"""Build mamba-ssm's selective-scan CUDA extension on its own.

The full mamba-ssm package is slow to build (many architectures, other kernels)
and pulls in more than the project needs. This builds only its
``selective_scan_cuda`` module from the ``csrc/selective_scan`` folder of
mamba-ssm's source package, for the architectures in ``--arch`` (default 9.0,
the H100/H200), with the compiler flags of mamba-ssm's setup.py, through
``torch.utils.cpp_extension.load`` (ninja, ``MAX_JOBS`` parallel jobs), and by
default for real A only (``--complex`` builds the complex-A kernels too).
``semillie_mm.ops.selective_scan.backends.cuda`` imports the result when the mamba_ssm
package is absent.

    python benchmarks/gpu/build_selective_scan.py \
        --sdist .gpu_carry/src/mamba_ssm-2.3.2.post1.tar.gz \
        --build-dir .gpu_build/selective_scan [--arch 9.0] [--jobs 16]

On success ``BUILD_DIR/selective_scan_cuda.so`` exists and
``BUILD_DIR/build_info.json`` records the torch/CUDA versions it was built
against; put ``BUILD_DIR`` on ``PYTHONPATH`` to use it. A build folder whose
``build_info.json`` matches the running torch is reused.
"""
import argparse
import glob
import importlib
import json
import os
import os.path as osp
import re
import shutil
import sys
import tarfile
import time

#: the extension's sources, as listed in mamba-ssm 2.x's setup.py
SOURCES = (
    'selective_scan.cpp',
    'selective_scan_fwd_fp32.cu',
    'selective_scan_fwd_fp16.cu',
    'selective_scan_fwd_bf16.cu',
    'selective_scan_bwd_fp32_real.cu',
    'selective_scan_bwd_fp32_complex.cu',
    'selective_scan_bwd_fp16_real.cu',
    'selective_scan_bwd_fp16_complex.cu',
    'selective_scan_bwd_bf16_real.cu',
    'selective_scan_bwd_bf16_complex.cu',
)

#: nvcc flags of mamba-ssm's setup.py (CUDA branch), without the -gencode list
#: (TORCH_CUDA_ARCH_LIST gives it) and -std (torch adds the C++ standard its
#: headers need: C++20 for torch >= 2.10); --ptxas-options=-v only adds log
NVCC_FLAGS = (
    '-O3',
    '-U__CUDA_NO_HALF_OPERATORS__',
    '-U__CUDA_NO_HALF_CONVERSIONS__',
    '-U__CUDA_NO_BFLOAT16_OPERATORS__',
    '-U__CUDA_NO_BFLOAT16_CONVERSIONS__',
    '-U__CUDA_NO_BFLOAT162_OPERATORS__',
    '-U__CUDA_NO_BFLOAT162_CONVERSIONS__',
    '--expt-relaxed-constexpr',
    '--expt-extended-lambda',
    '--use_fast_math',
    '-lineinfo',
)
CXX_FLAGS = ('-O3', )


def extract_sources(sdist: str, dest: str) -> str:
    """Extract ``csrc/selective_scan`` of a mamba-ssm source package.

    Args:
        sdist (str): ``mamba_ssm-*.tar.gz``.
        dest (str): folder to extract into.

    Returns:
        str: the folder holding the sources.
    """
    if not osp.isfile(sdist):
        raise FileNotFoundError(f'{sdist}: mamba-ssm source package not found '
                                '(run tools/prepare_gpu_carry.sh)')
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers()
                   if '/csrc/selective_scan/' in m.name and m.isfile()]
        if not members:
            raise ValueError(f'{sdist}: no csrc/selective_scan/ inside')
        for m in members:
            m.name = osp.basename(m.name)
            tar.extract(m, dest, filter='data')
    missing = [s for s in SOURCES if not osp.isfile(osp.join(dest, s))]
    if missing:
        raise ValueError(f'{sdist}: csrc/selective_scan lacks {missing}')
    return dest


#: the kernels for complex A: never used here (SS2D's A is real), about half of
#: the compile time and of the library (35 MiB packed with them, over the 16 MiB
#: a device call returns per file)
COMPLEX_SOURCES = tuple(s for s in SOURCES if s.endswith('_complex.cu'))

_COMPLEX_BRANCH = re.compile(
    r'\} else if \(WTYPE == at::ScalarType::ComplexFloat\) \{\s*\\\n'
    r'\s*using weight_t = c10::complex<float>;\s*\\\n'
    r'\s*__VA_ARGS__\(\);\s*\\\n\s*')
_COMPLEX_INSTANCE = re.compile(r'^template void selective_scan_fwd_cuda<[^>]*'
                               r'complex_t>\(.*$\n?', re.M)


def drop_complex(src: str) -> tuple:
    """Edit the extracted sources to build the real-A kernels only.

    Removes the complex branch of the weight-type dispatch in
    ``selective_scan.cpp`` (a complex A then raises "not implemented for
    weight type") and the complex instantiations of the forward files.

    Args:
        src (str): folder from :func:`extract_sources`.

    Returns:
        tuple[str]: the sources to compile.
    """
    cpp = osp.join(src, 'selective_scan.cpp')
    text = open(cpp).read()
    text, n = _COMPLEX_BRANCH.subn('', text)
    if n != 1:
        raise ValueError(f'{cpp}: expected one complex dispatch branch, '
                         f'found {n}')
    with open(cpp, 'w') as f:
        f.write(text)
    for name in SOURCES:
        if name.startswith('selective_scan_fwd_'):
            path = osp.join(src, name)
            text, n = _COMPLEX_INSTANCE.subn('', open(path).read())
            if n != 1:
                raise ValueError(f'{path}: expected one complex '
                                 f'instantiation, found {n}')
            with open(path, 'w') as f:
                f.write(text)
    return tuple(s for s in SOURCES if s not in COMPLEX_SOURCES)


def find_cuda_home() -> str:
    """A CUDA toolkit folder with ``bin/nvcc`` and ``include/cuda_runtime.h``.

    torch guesses CUDA_HOME from ``which nvcc``, which is wrong when ``nvcc``
    is a wrapper script outside the toolkit (e.g. /usr/local/bin/nvcc).

    Returns:
        str: ``$CUDA_HOME`` if set, else the first toolkit found.
    """
    import shutil
    if os.environ.get('CUDA_HOME'):
        return os.environ['CUDA_HOME']
    candidates = []
    nvcc = shutil.which('nvcc')
    if nvcc:
        candidates.append(osp.dirname(osp.dirname(osp.realpath(nvcc))))
    candidates += ['/usr/local/cuda'] + sorted(
        glob.glob('/usr/local/cuda-*'), reverse=True)
    for c in candidates:
        if (osp.isfile(osp.join(c, 'bin', 'nvcc'))
                and osp.isfile(osp.join(c, 'include', 'cuda_runtime.h'))):
            return c
    raise RuntimeError(f'no CUDA toolkit (nvcc + cuda_runtime.h) in '
                       f'{candidates}; set CUDA_HOME')


def build_info() -> dict:
    import torch
    # the Python ABI is major.minor: a 3.12.1 build loads in 3.12.3
    return dict(torch=torch.__version__, cuda=torch.version.cuda,
                python='%d.%d' % sys.version_info[:2])


def build(sdist: str, build_dir: str, arch: str = '9.0',
          jobs: int = 0, verbose: bool = True,
          complex_kernels: bool = False) -> dict:
    """Compile (or reuse) the extension; import it to check it loads.

    Args:
        sdist (str): mamba-ssm source package.
        build_dir (str): output folder.
        arch (str): ``TORCH_CUDA_ARCH_LIST`` value. Defaults to '9.0'.
        jobs (int): parallel compile jobs; 0 = all cores.
        verbose (bool): show the compiler commands.
        complex_kernels (bool): also build the complex-A kernels (mamba-ssm's
            full extension). Defaults to False (see :func:`drop_complex`).

    Returns:
        dict: ``path`` of the module, ``seconds``, ``reused``, versions.
    """
    os.environ['CUDA_HOME'] = find_cuda_home()  # read when cpp_extension loads
    import torch
    from torch.utils import cpp_extension
    os.makedirs(build_dir, exist_ok=True)
    so_path = osp.join(build_dir, 'selective_scan_cuda.so')
    info_path = osp.join(build_dir, 'build_info.json')
    info = dict(build_info(), arch=arch, cuda_home=os.environ['CUDA_HOME'],
                complex_kernels=complex_kernels)
    reused = False
    if osp.isfile(so_path) and osp.isfile(info_path):
        with open(info_path) as f:
            found = json.load(f)
        # where the toolkit lies does not make a binary fit or not (a copy
        # prebuilt on another machine is reused)
        reused = ({k: v for k, v in found.items() if k != 'cuda_home'} ==
                  {k: v for k, v in info.items() if k != 'cuda_home'})
    t0 = time.perf_counter()
    if not reused:
        if not cpp_extension.is_ninja_available():
            raise RuntimeError('ninja is not available: a serial build would '
                               'take far too long (pip install ninja)')
        src = osp.join(build_dir, 'src')
        shutil.rmtree(src, ignore_errors=True)
        extract_sources(sdist, src)
        sources = SOURCES if complex_kernels else drop_complex(src)
        os.environ['TORCH_CUDA_ARCH_LIST'] = arch
        os.environ['MAX_JOBS'] = str(jobs or os.cpu_count() or 1)
        cpp_extension.load(
            name='selective_scan_cuda',
            sources=[osp.join(src, s) for s in sources],
            extra_cflags=list(CXX_FLAGS),
            extra_cuda_cflags=list(NVCC_FLAGS),
            extra_include_paths=[src],
            build_directory=build_dir,
            verbose=verbose)
        with open(info_path + '.tmp', 'w') as f:
            json.dump(info, f)
        os.replace(info_path + '.tmp', info_path)
    seconds = time.perf_counter() - t0
    # the folder may be on PYTHONPATH and have been missing or empty when this
    # interpreter first looked: drop the cached finder for it
    sys.path_importer_cache.pop(build_dir, None)
    importlib.invalidate_caches()
    sys.path.insert(0, build_dir)
    import selective_scan_cuda
    assert hasattr(selective_scan_cuda, 'fwd') and hasattr(
        selective_scan_cuda, 'bwd'), 'module has no fwd/bwd'
    return dict(info, path=selective_scan_cuda.__file__, seconds=seconds,
                reused=reused, torch_cuda_available=torch.cuda.is_available())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sdist', required=True)
    parser.add_argument('--build-dir', required=True)
    parser.add_argument('--arch', default='9.0')
    parser.add_argument('--jobs', type=int, default=0)
    parser.add_argument('--complex', action='store_true',
                        help='also build the complex-A kernels')
    args = parser.parse_args()
    print(json.dumps(build(args.sdist, args.build_dir, args.arch, args.jobs,
                           complex_kernels=args.complex)))


if __name__ == '__main__':
    main()
