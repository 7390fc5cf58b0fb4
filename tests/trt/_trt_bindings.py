"""The real TensorRT Python bindings, read without libnvinfer, and the check of the fakes against them.

NVIDIA publishes the compiled bindings alone on PyPI (``tensorrt-cu12-bindings`` for 10.x,
``tensorrt-cu13-bindings`` for 11.x: ``tensorrt_bindings/tensorrt.so`` + its ``__init__.py``); the libraries
they link (libnvinfer, libnvonnxparser, libnvinfer_plugin) come from another index and cannot be had here.
The extension refers to nine functions of those libraries and calls none of them while importing, so a copy
of it whose ``DT_NEEDED`` entries name libc instead and whose nine undefined symbols are made weak imports
cleanly in a child process: its classes, enums, properties and pybind11 signatures are then read exactly as
TensorRT defines them (``dir``, ``inspect.getattr_static``, the ``__doc__`` signature lines). Nothing of
TensorRT runs: any call into the missing libraries would crash the child, and none is made.
"""
from __future__ import annotations

import inspect
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

# package, version, sha256 per CPython tag (manylinux_2_28_x86_64, what pip picks on x86-64 Linux)
WHEELS = {
    10: ("tensorrt-cu12-bindings", "10.16.1.11", {
        "cp310": "c1b6a156db4eab526360f5dba375e5c33e1275e3f36b0a7d375febb3db6202fc",
        "cp311": "150ef2b672487e29a8ea916353467c3e199994fb33589167e3641a928e243aa7",
        "cp312": "8e339335e7255b3fb3954eca61b4acbbdfcf7b28505bd711914519647ba310c8",
        "cp313": "f2a08cedfa48e300720e5bed070a45e390ea67dbcf475ffce725d10e0a2b3ba7",
    }),
    11: ("tensorrt-cu13-bindings", "11.4.0.106", {
        "cp310": "1d17853da33a186c4d4d39995c1186bb59f643689aabac9c3e33ae5f0ba402f5",
        "cp311": "d072ac2a095e2be749fefc847adfb25d5ebe70303401df62ede8fe67a59f27fc",
        "cp312": "5fc7a6c412881f7212030893bd5531b1a0ff415c72c7678dfe4ead7a7765b38d",
        "cp313": "bac9a362c9189b5f5dd0444213913846e4b46003237834958e890eff57d86ed5",
    }),
}
# the libraries' functions the extension imports (nm -D --undefined-only, identical in 10.16 and 11.4)
TRT_IMPORTS = {b"createInferBuilder_INTERNAL", b"createInferRefitter_INTERNAL", b"createInferRuntime_INTERNAL",
               b"createNvOnnxParserRefitter_INTERNAL", b"createNvOnnxParser_INTERNAL", b"getBuilderPluginRegistry",
               b"getNvOnnxParserVersion", b"getPluginRegistry", b"initLibNvInferPlugins"}
TRT_LIBS = (b"libnvinfer", b"libnvonnxparser")


def unsupported_here() -> str | None:
    """Why the bindings of the pinned wheels cannot be read on this machine, or None."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return f"the pinned bindings wheels are x86-64 Linux builds; this is {sys.platform}/{platform.machine()}"
    if tag not in WHEELS[10][2]:
        return f"no bindings wheel is pinned for {tag} (tests/trt/_trt_bindings.py WHEELS)"
    return None


def bindings_wheel(major: int) -> Path:
    """The pinned wheel for this interpreter, from the zoo's wheel cache or the package registry (sha256-checked)."""
    from ocrconvert.zoo.fetch import ZooEntry, _download_wheel

    package, version, pins = WHEELS[major]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    entry = ZooEntry(f"{package}-{tag}", "TensorRT Python bindings (read, never installed)", f"{package}=={version}",
                     pins[tag], "wheel", "none", {})
    return _download_wheel(entry, lambda m: None)


def _patch_elf(data: bytearray) -> tuple[int, int]:
    """In place: DT_NEEDED libnvinfer*/libnvonnxparser* -> libc.so.6, TensorRT's imported functions -> weak."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1 or struct.unpack_from("<H", data, 18)[0] != 62:
        raise ValueError("not a little-endian x86-64 ELF64 object")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    dynsym = next(s for s in sections if s[1] == 11)        # SHT_DYNSYM
    dynamic = next(s for s in sections if s[1] == 6)        # SHT_DYNAMIC
    strtab = sections[dynsym[6]][4]

    def name(off: int) -> bytes:
        start = strtab + off
        return bytes(data[start:data.index(b"\0", start)])

    entries = [(o, *struct.unpack_from("<qQ", data, o)) for o in range(dynamic[4], dynamic[4] + dynamic[5], 16)]
    libc = next(v for _, tag, v in entries if tag == 1 and name(v) == b"libc.so.6")
    needed = 0
    for off, tag, val in entries:
        if tag == 1 and name(val).startswith(TRT_LIBS):
            struct.pack_into("<qQ", data, off, tag, libc)
            needed += 1
    weak = 0
    for off in range(dynsym[4], dynsym[4] + dynsym[5], 24):
        st_name, st_info, _, st_shndx = struct.unpack_from("<IBBH", data, off)
        if st_shndx == 0 and name(st_name) in TRT_IMPORTS:
            data[off + 4] = (2 << 4) | (st_info & 0xF)      # STB_WEAK, same type
            weak += 1
    return needed, weak


def loadable_copy(wheel: Path, dest: Path) -> Path:
    """``dest/tensorrt/``: the wheel's ``tensorrt_bindings`` package with the extension patched; returns ``dest``."""
    pkg = dest / "tensorrt"
    if pkg.exists():
        shutil.rmtree(pkg)
    pkg.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            if member.startswith("tensorrt_bindings/") and not member.endswith("/"):
                target = pkg / member[len("tensorrt_bindings/"):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(member))
    so = pkg / "tensorrt.so"
    data = bytearray(so.read_bytes())
    needed, weak = _patch_elf(data)
    if needed != 3 or weak != len(TRT_IMPORTS):
        raise ValueError(f"{wheel.name}: expected 3 TensorRT libraries and {len(TRT_IMPORTS)} imports, "
                         f"patched {needed} and {weak}: the extension changed, re-check TRT_IMPORTS")
    so.write_bytes(bytes(data))
    return dest


# --------------------------------------------------------------------------------------------------
# describing a name: the same rules for the real module (in the child) and the fakes (here)
# --------------------------------------------------------------------------------------------------
DESCRIBE = r'''
import inspect, json, os, re, sys

def split_params(text):
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(<{":
            depth += 1
        elif ch in "])>}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip()); cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out

def doc_signatures(func, name):
    """pybind11 writes each overload as 'name(self: T, a: T = default) -> R' in __doc__."""
    sigs = []
    for line in (getattr(func, "__doc__", None) or "").splitlines():
        m = re.match(r"^\s*(?:\d+\.\s+)?" + re.escape(name) + r"\((.*)\)\s*->", line)
        if not m or m.group(1) == "*args, **kwargs":
            continue
        params = []
        for p in split_params(m.group(1)):
            pname = p.split(":", 1)[0].split("=", 1)[0].strip()
            params.append([pname, "=" in p])
        if params and params[0][0] == "self":
            params = params[1:]
        sigs.append(params)
    return sigs

def py_signature(func):
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    return [[p.name, p.default is not inspect.Parameter.empty] for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

def is_enum_member(value):
    members = getattr(type(value), "__members__", None)
    return isinstance(members, dict) and any(m is value or (type(m) is type(value) and m == value)
                                             for m in members.values())

def describe(owner, name):
    try:
        static = inspect.getattr_static(owner, name)
    except AttributeError:
        return {"exists": False}
    value = getattr(owner, name)
    info = {"exists": True}
    if isinstance(static, property):
        info["kind"] = "property"
    elif inspect.isclass(value):
        info["kind"] = "class"
        init = value.__dict__.get("__init__") or getattr(value, "__init__")
        doc = (getattr(init, "__doc__", None) or "")
        if getattr(init, "_ocrconvert_no_constructor", False) or doc.startswith("Initialize self"):
            info["constructor"] = None
        else:
            sigs = doc_signatures(init, "__init__") if "__init__(" in doc else []
            info["constructor"] = sigs or ([py_signature(init)] if py_signature(init) is not None else [])
        info["doc"] = (value.__doc__ or "")[:2000]
    elif is_enum_member(value):
        info["kind"] = "enum"
        info["value"] = int(value)
    elif callable(value):
        info["kind"] = "function" if inspect.ismodule(owner) else "method"
        sigs = doc_signatures(value, name)
        if not sigs and py_signature(value) is not None:
            sigs = [py_signature(value)]
        info["signatures"] = sigs
    else:
        info["kind"] = "value"
    return info

def resolve(root, path):
    owner = root
    parts = path.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part)
    return owner, parts[-1]
'''

_CHILD = DESCRIBE + r'''
root = sys.argv[1]
sys.path.insert(0, root)
sys.setdlopenflags(os.RTLD_LAZY | os.RTLD_LOCAL)
import tensorrt as trt
assert os.path.dirname(trt.__file__).startswith(root), trt.__file__
paths = json.load(sys.stdin)
out = {}
for path in paths:
    try:
        owner, name = resolve(trt, path)
    except AttributeError:
        out[path] = {"exists": False}
        continue
    out[path] = describe(owner, name)
json.dump({"version": trt.__version__, "names": out}, sys.stdout)
'''


def real_catalogue(root: Path, paths: list[str]) -> dict:
    """Describe ``paths`` (dotted, from the module) in the patched bindings under ``root``, in a child process."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(root)], input=json.dumps(paths), capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(root)})
    if proc.returncode != 0:
        raise RuntimeError(f"reading the bindings failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


_ns: dict = {}
exec(DESCRIBE, _ns)  # the same describe() here, for the fakes
describe, resolve = _ns["describe"], _ns["resolve"]

# dunders every Python object has: nothing a fake can invent by defining them
_OBJECT_DUNDERS = set(dir(object)) | {"__dict__", "__weakref__", "__module__", "__qualname__", "__annotations__",
                                      "__firstlineno__", "__static_attributes__"}


def fake_paths(mod) -> list[str]:
    """Every public name a fake module exposes, dotted: module attributes, class members (inherited ones
    included), nested classes and enum members, and dunders a fake class defines beyond ``object``'s."""
    paths: list[str] = []

    def walk(cls, prefix: str) -> None:
        own = set()
        for klass in cls.__mro__[:-1]:
            own |= set(vars(klass))
        for name in sorted(set(dir(cls)) | own):
            if name.startswith("__"):
                if name in _OBJECT_DUNDERS or name not in own:
                    continue
            elif name.startswith("_"):
                continue
            paths.append(f"{prefix}.{name}")
            value = getattr(cls, name)
            if inspect.isclass(value) and value is not cls:
                walk(value, f"{prefix}.{name}")

    for name in sorted(n for n in dir(mod) if not n.startswith("_") or n == "__version__"):
        paths.append(name)
        value = getattr(mod, name)
        if inspect.isclass(value):
            walk(value, name)
    return paths


def _compatible(fake_sig: list, real_sigs: list) -> bool:
    """The fake's parameters are a leading run of one real overload's (same names, same order), every real
    parameter the fake leaves out has a default, and the fake gives no default the real one lacks."""
    for real in real_sigs:
        if len(fake_sig) > len(real):
            continue
        head = real[:len(fake_sig)]
        if [n for n, _ in head] != [n for n, _ in fake_sig]:
            continue
        if not all(d for _, d in real[len(fake_sig):]):
            continue
        if any(fd and not rd for (_, fd), (_, rd) in zip(fake_sig, head)):
            continue
        return True
    return False


def compare(mod, real: dict) -> list[str]:
    """Every way the fake module differs from the real bindings, as messages (empty: faithful)."""
    problems = []
    for path in fake_paths(mod):
        owner, name = resolve(mod, path)
        fake = describe(owner, name)
        got = real.get(path, {"exists": False})
        if name == "__bytes__":   # the real class gives bytes() the buffer protocol, which Python code cannot define
            if "buffer protocol" not in (real.get(path.rsplit(".", 1)[0], {}).get("doc") or ""):
                problems.append(f"{path}: the real class does not expose the buffer protocol bytes() relies on")
            continue
        if not got["exists"]:
            problems.append(f"{path}: not in the real bindings")
            continue
        if name.startswith("__") and name != "__version__":
            continue   # a dunder the real class has: its existence is the check
        if fake["kind"] != got["kind"]:
            problems.append(f"{path}: a {fake['kind']} in the fake, a {got['kind']} in the real bindings")
            continue
        if fake["kind"] == "enum" and fake["value"] != got["value"]:
            problems.append(f"{path}: value {fake['value']} in the fake, {got['value']} in the real bindings")
        if fake["kind"] in ("method", "function") and not _compatible(fake["signatures"][0], got["signatures"]):
            problems.append(f"{path}: parameters {fake['signatures'][0]} match no real overload {got['signatures']}")
        if fake["kind"] == "class" and fake["constructor"] is not None:
            if got["constructor"] is None:
                problems.append(f"{path}: constructible in the fake, no constructor in the real bindings")
            elif not _compatible(fake["constructor"][0], got["constructor"]):
                problems.append(f"{path}: constructor {fake['constructor'][0]} matches no real one "
                                f"{got['constructor']}")
    return problems


__all__ = ["WHEELS", "unsupported_here", "bindings_wheel", "loadable_copy", "real_catalogue", "fake_paths", "compare"]
