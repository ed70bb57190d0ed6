"""The embedded model's server binary: llama.cpp's own `llama-server`, built once from the
source vendored in a pinned llama-cpp-python sdist, for one fixed instruction set.

Why not llama-cpp-python's own wheel: it compiles for the build machine's CPU (native
detection), so a wheel built on a machine that advertises AMX or AVX-512 dies with SIGILL on one
that refuses them, pip's wheel cache hands that wheel to every later install whatever CMAKE_ARGS
say, and different SIMD builds give the same model different greedy answers. Here:
- the instruction set is fixed (x86-64-v3: AVX2, FMA, F16C, BMI2; no AVX-512, no AMX, no
  native detection), so every x86-64 machine with AVX2 runs the same kernels and gets the same
  answers (pinned by tests/test_golden_answers.py);
- the build lives in its own cache folder keyed by the sdist's hash and the flags, with a
  manifest of the binary's hash and of the CPU features the binary itself reports
  (`check_features` refuses AVX-512, AMX or missing AVX2 at install); at every start
  `installed_server` checks the hash, so a binary built any other way is never used silently;
- `llama-server` batches requests from parallel slots and reuses cached prompt prefixes, which
  the Python server does not (BENCHMARKS.md, "The embedded model").

`python -m harness build-llama` runs `build()`; the README's first command calls it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
INSTRUCTION_SET = "x86-64-v3 (AVX2, FMA, F16C, BMI2)"
REQUIRED_CPU_FLAGS = ("avx2", "fma", "f16c", "bmi2")
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF",
    # the instruction set, explicitly: nothing is detected from the build machine
    "-DGGML_NATIVE=OFF", "-DGGML_SSE42=ON", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_BMI2=ON",
    "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_AVX_VNNI=OFF", "-DGGML_AVX512=OFF",
    "-DGGML_AVX512_VBMI=OFF", "-DGGML_AVX512_VNNI=OFF", "-DGGML_AVX512_BF16=OFF",
    "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
    "-DGGML_BACKEND_DL=OFF", "-DGGML_CPU_ALL_VARIANTS=OFF",
    # ggml's own thread pool instead of OpenMP's spinning workers (the harness shares the cores)
    "-DGGML_OPENMP=OFF",
    # only the server; no web UI (its prebuilt copy would be downloaded), no TLS
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_OPENSSL=OFF",
)
# what the server's startup report ("system_info: ... CPU : SSE3 = 1 | AVX2 = 1 | ...") must say
REQUIRED_FEATURES = ("AVX2", "FMA", "F16C", "BMI2")
FORBIDDEN_FEATURE_PREFIXES = ("AVX512", "AMX", "AVX_VNNI")
BUILD_ID = hashlib.sha256("\n".join((LLAMA_CPP_PYTHON_VERSION, SDIST_SHA256, *CMAKE_FLAGS)).encode()
                          ).hexdigest()[:12]
BUILD_COMMAND = "python -m harness build-llama"


class BuildError(RuntimeError):
    """The pinned server could not be built, or an installed one is not the pinned build."""


def home() -> Path:
    """Where builds live: $HARNESS_LLAMA_HOME, else the user's cache folder."""
    explicit = os.environ.get("HARNESS_LLAMA_HOME")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "llm-eval-harness" / "llama-server"


def build_dir() -> Path:
    return home() / f"{LLAMA_CPP_PYTHON_VERSION}-{BUILD_ID}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cpu_problem() -> str | None:
    """Why this machine cannot run the pinned build, or None."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return (f"the pinned llama.cpp build is for x86-64 with AVX2; this machine is {machine}. "
                "Point HARNESS_LOCAL_SERVER at a llama-server built for it (answers will differ "
                "from the pinned ones), or evaluate an endpoint instead")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None  # not Linux: the build's own report is checked at start instead
    flags_line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    flags = set(flags_line.split(":", 1)[-1].split())
    missing = [f for f in REQUIRED_CPU_FLAGS if f not in flags]
    if missing:
        return f"this CPU lacks {', '.join(missing)}, which the pinned build ({INSTRUCTION_SET}) needs"
    return None


def installed_server() -> Path:
    """The pinned build's binary, after checking it is exactly what `build()` installed."""
    folder = build_dir()
    binary, manifest_path = folder / "llama-server", folder / "build.json"
    if not binary.is_file() or not manifest_path.is_file():
        raise BuildError(f"the embedded model's server is not built yet ({folder}): run `{BUILD_COMMAND}` "
                         "(about 8 minutes on 2 cores, once per machine)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("build_id") != BUILD_ID or manifest.get("binary_sha256") != _sha256(binary):
        raise BuildError(f"{binary} is not the pinned build (its manifest or hash does not match): "
                         f"delete {folder} and run `{BUILD_COMMAND}`")
    return binary


def check_features(startup_log: str) -> str | None:
    """What is wrong with the CPU features a server reports (its `system_info` line), or None:
    a binary built natively (AVX-512, AMX) is refused at install."""
    match = re.search(r"system_info:.*?CPU : (.*)", startup_log)
    if match is None:
        return "the server did not report its CPU features (system_info): not a pinned llama-server?"
    features = {name.strip(): value.strip() for name, _, value in
                (item.partition("=") for item in match.group(1).split("|")) if name.strip()}
    missing = [f for f in REQUIRED_FEATURES if features.get(f) != "1"]
    extra = [f for f, v in features.items() if v == "1" and f.startswith(FORBIDDEN_FEATURE_PREFIXES)]
    if missing or extra:
        return (f"the server was built for other CPU features than the pinned {INSTRUCTION_SET}"
                + (f": missing {', '.join(missing)}" if missing else "")
                + (f"; has {', '.join(extra)}" if extra else ""))
    return None


def _tool(name: str) -> str | None:
    """A build tool: the one the `local` extra installed beside this interpreter (an
    unactivated venv's scripts are not on PATH), else the system's."""
    import sysconfig

    beside = Path(sysconfig.get_path("scripts")) / name
    return str(beside) if beside.is_file() else shutil.which(name)


def _run(command: list[str], log: Path, say: Callable[[str], None], what: str, **kwargs) -> None:
    say(f"{what} (log: {log})")
    with log.open("a") as fh:
        fh.write("$ " + " ".join(command) + "\n")
        fh.flush()
        done = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise BuildError(f"{what} failed (exit {done.returncode}); last lines of {log}:\n{tail}")


def build(*, jobs: int | None = None, force: bool = False, sdist: Path | None = None,
          say: Callable[[str], None] = print) -> Path:
    """Download the pinned sdist from the package index (pip, hash-checked), build its vendored
    `llama-server` with `CMAKE_FLAGS`, and install it with a manifest. Returns the binary."""
    problem = cpu_problem()
    if problem:
        raise BuildError(problem)
    folder = build_dir()
    if not force:
        try:
            binary = installed_server()
            say(f"the pinned llama-server is already built: {binary}")
            return binary
        except BuildError:
            pass
    cmake = _tool("cmake")
    if cmake is None:
        raise BuildError("cmake is not installed: pip install -e '.[local]' brings it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="harness-llama-build-", dir=folder.parent))
    log = work / "build.log"
    if sdist is None:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python",
              f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "-d", str(work)],
             log, say, f"downloading the llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} source")
        sdist = work / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    if _sha256(sdist) != SDIST_SHA256:
        raise BuildError(f"{sdist} does not have the pinned hash {SDIST_SHA256}")
    say("unpacking its vendored llama.cpp")
    prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
        archive.extractall(work / "src", members=members, filter="data")
    source, build_tree = work / "src" / prefix, work / "build"
    ninja = _tool("ninja")
    generator = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"] if ninja else []
    _run([cmake, "-S", str(source), "-B", str(build_tree), *generator, *CMAKE_FLAGS], log, say,
         f"configuring for {INSTRUCTION_SET}")
    _run([cmake, "--build", str(build_tree), "--target", "llama-server", "-j", str(jobs or os.cpu_count() or 2)],
         log, say, "compiling llama-server (several minutes)")
    binary = install(build_tree / "bin" / "llama-server")
    shutil.rmtree(work, ignore_errors=True)
    say(f"built {binary}")
    return binary


def reported_features(binary: Path) -> str:
    """The server's own report of the CPU features it was built for. It logs them (at
    verbosity 4 only) before it loads a model, so a start with no model prints them and exits."""
    probe = subprocess.run([str(binary), "--log-verbosity", "4", "--model", "/nonexistent.gguf",
                            "--port", "0", "--no-webui"], capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
    return next((line for line in (probe.stdout + probe.stderr).splitlines() if "system_info:" in line), "")


def install(built: Path) -> Path:
    """Copy a llama-server built with CMAKE_FLAGS into `build_dir()`, with its manifest, after
    checking that it reports exactly the pinned CPU features."""
    folder = build_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    features = reported_features(built)
    problem = check_features(features)
    if problem:
        raise BuildError(f"{built}: {problem}")
    version = subprocess.run([str(built), "--version"], capture_output=True, text=True, timeout=60)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=folder.parent))
    shutil.copy2(built, staging / "llama-server")
    manifest = {"build_id": BUILD_ID, "llama_cpp_python": LLAMA_CPP_PYTHON_VERSION,
                "sdist_sha256": SDIST_SHA256, "instruction_set": INSTRUCTION_SET,
                "cmake_flags": list(CMAKE_FLAGS), "binary_sha256": _sha256(staging / "llama-server"),
                "system_info": features.split("system_info:", 1)[-1].strip(),
                "version": (version.stdout + version.stderr).strip()}
    (staging / "build.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)  # the manifest and the binary appear together
    return folder / "llama-server"
