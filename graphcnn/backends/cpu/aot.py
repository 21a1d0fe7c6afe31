"""Ahead-of-time compiled kernels: object code that runs without Numba's compiler.

Kernel wrappers call their Numba functions through `registry.launch(fn, *args)`. Three
things happen here:

1. **Recording.** Under `launch_mode(recorder=r)` every launch adds the function and its
   argument *signature* to `r`: `("float32[4C]", "float32[1A]", "int64", "bool")`, i.e.
   per array its dtype, rank and 'C' (C-contiguous) or 'A' (any strides, e.g. a broadcast
   view with zero strides); per scalar its type.
2. **Building** (`build_entry`, on the compile machine). Each recorded (function,
   signature) becomes a `numba.cfunc` with a plain C signature: an array is passed as its
   data pointer and its shape (and for 'A' its byte strides) and is rebuilt inside with
   `numba.carray` (+ `as_strided`); scalars stay scalars. The entry calls the function, so
   Numba links the function, its callees and its parallel (parfor) gufuncs into the
   entry's library, which is emitted as one object file with the JIT's own target
   machine. Two runtime hooks that would *unpickle* data embedded in the code (Numba's
   exception info, only used when a kernel raises) are renamed to graphcnn stubs that
   report the error without unpickling anything.
3. **Loading** (`load_entries`, anywhere). Numba's runtime symbols (NRT, helperlib, math,
   the threading layer's parallel launcher) are registered with llvmlite: that is symbol
   registration, not compilation. The object files go into one llvmlite MCJIT engine; each
   entry's address is wrapped in a ctypes function. Under `launch_mode(table=t)` launches
   call those; a launch with no entry warns and falls back to Numba (compiling).
"""
from __future__ import annotations

import ctypes
import hashlib
import re
import struct
import sys
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

# Array element types and scalar types an entry may take; anything else is refused.
ARRAY_DTYPES = ("float32", "float64", "int64", "int32", "uint64", "uint8", "bool")
SCALAR_CTYPES: dict[str, Any] = {
    "bool": ctypes.c_bool, "int32": ctypes.c_int32, "int64": ctypes.c_int64,
    "uint64": ctypes.c_uint64, "float32": ctypes.c_float, "float64": ctypes.c_double,
}
RETURN_CTYPES: dict[str, Any] = {"void": None, **SCALAR_CTYPES}

_PY_SCALARS: dict[type, str] = {
    bool: "bool", int: "int64", float: "float64", np.bool_: "bool", np.int32: "int32",
    np.int64: "int64", np.uint64: "uint64", np.float32: "float32", np.float64: "float64",
}
_ARRAY_SPEC = re.compile(r"^([a-z0-9]+)\[([0-9])([CA])\]$")

# Symbols in Numba-generated code that would unpickle data embedded in the code (only on
# the path where a kernel raises). Built entries call graphcnn's stubs instead.
UNPICKLING_HOOKS = {"numba_unpickle": "graphcnn_aot_exception_info",
                    "numba_runtime_build_excinfo_struct": "graphcnn_aot_dynamic_exception_info"}


class AotError(RuntimeError):
    """A kernel cannot be precompiled, or precompiled code cannot be loaded here."""


# ---- naming and signatures ----------------------------------------------------------------
def kernel_name(fn: Any) -> str:
    """`module.qualname` of a Numba function (or a GeneratedKernel's `aot_name`)."""
    name = getattr(fn, "aot_name", None)
    if name is None:
        py = getattr(fn, "py_func", fn)
        name = f"{py.__module__}.{py.__qualname__}"
    return name


def arg_signature(args: Sequence[Any]) -> tuple[str, ...]:
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            out.append(f"{a.dtype.name}[{a.ndim}{'C' if a.flags.c_contiguous else 'A'}]")
        else:
            out.append(_PY_SCALARS.get(type(a)) or f"?{type(a).__name__}")
    return tuple(out)


def parse_spec(spec: str) -> tuple[str, int, bool] | str:
    """An array spec as (dtype, ndim, strided), a scalar spec as its name; ValueError if
    it is neither (specs come from files: nothing else is accepted)."""
    m = _ARRAY_SPEC.match(spec)
    if m:
        dtype, ndim, layout = m.group(1), int(m.group(2)), m.group(3)
        if dtype not in ARRAY_DTYPES or ndim < 1:
            raise ValueError(f"unsupported array argument {spec!r}")
        return dtype, ndim, layout == "A"
    if spec in SCALAR_CTYPES:
        return spec
    raise ValueError(f"unsupported argument type {spec!r}")


# ---- recording --------------------------------------------------------------------------
@dataclass
class Recorder:
    """What launches a run made: (kernel name, signature) -> (function, readonly flags of
    the array arguments of the first such launch)."""
    launches: dict[tuple[str, tuple[str, ...]], tuple[Any, tuple[bool, ...]]] = \
        field(default_factory=dict)

    def add(self, fn: Any, args: Sequence[Any]) -> None:
        key = (kernel_name(fn), arg_signature(args))
        if key not in self.launches:
            readonly = tuple(isinstance(a, np.ndarray) and not a.flags.writeable for a in args)
            self.launches[key] = (fn, readonly)


def dispatch(table: "EntryTable | None", recorder: Recorder | None, fn: Any,
             args: tuple) -> Any:
    """registry.launch's slow path: record and/or run a precompiled entry."""
    if recorder is not None:
        recorder.add(fn, args)
    if table is not None:
        name = kernel_name(fn)
        signature = arg_signature(args)
        entry = table.entries.get((name, signature))
        if entry is not None:
            return entry(args)
        table.missing(name, signature)
    return fn(*args)


_FINGERPRINT: str | None = None


def kernels_fingerprint() -> str:
    """SHA-256 over the sources of the cpu backend (kernels, code generation, this file):
    precompiled code is used only by the sources it was compiled from."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        import os
        root = os.path.dirname(os.path.abspath(__file__))
        digest = hashlib.sha256()
        for folder, dirs, files in sorted(os.walk(root)):
            dirs.sort()
            for name in sorted(f for f in files if f.endswith(".py")):
                full = os.path.join(folder, name)
                digest.update(os.path.relpath(full, root).encode() + b"\0")
                with open(full, "rb") as handle:
                    digest.update(handle.read() + b"\0")
        _FINGERPRINT = digest.hexdigest()
    return _FINGERPRINT


# ---- building (the compile machine) ----------------------------------------------------------
@dataclass(frozen=True)
class BuiltEntry:
    name: str                    # kernel name (module.qualname)
    signature: tuple[str, ...]
    restype: str
    symbol: str                  # the C entry point's symbol in `obj`
    obj: bytes                   # ELF (or the platform's) object code
    imports: list[str]           # the symbols `obj` needs from the process


def host_target() -> dict[str, str]:
    """What compiled code is specialized for: triple, CPU name, CPU features (the values
    Numba's JIT uses, honouring NUMBA_CPU_NAME / NUMBA_CPU_FEATURES)."""
    import llvmlite.binding as llvm
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features

    name = config.CPU_NAME or llvm.get_host_cpu_name()
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else \
        get_host_cpu_features()
    return {"triple": llvm.get_process_triple(), "cpu_name": name, "cpu_features": features}


def _numba_types(spec: Any, readonly: bool) -> Any:
    from numba import types
    if isinstance(spec, str):
        return getattr(types, "boolean" if spec == "bool" else spec)
    dtype, ndim, strided = spec
    nb_dtype = types.boolean if dtype == "bool" else getattr(types, dtype)
    return types.Array(nb_dtype, ndim, "A" if strided else "C", readonly=readonly)


_READONLY_VIEW = None


def _readonly_view() -> Callable[..., Any]:
    """A Numba intrinsic: the same array typed read-only, so an entry calls the very
    overload the run compiled for a frozen constant (no second compilation)."""
    global _READONLY_VIEW
    if _READONLY_VIEW is None:
        from numba.core.extending import intrinsic
        from numba.core.imputils import impl_ret_borrowed

        @intrinsic
        def readonly_view(typingctx, arr):
            result = arr.copy(readonly=True)

            def codegen(context, builder, signature, args):
                return impl_ret_borrowed(context, builder, result, args[0])
            return result(arr), codegen
        _READONLY_VIEW = readonly_view
    return _READONLY_VIEW


def entry_source(signature: Sequence[str], readonly: Sequence[bool], returns: bool) -> str:
    """Python source of an entry taking the flattened C arguments."""
    params, lines, call = [], [], []
    for i, spec in enumerate(signature):
        parsed = parse_spec(spec)
        if isinstance(parsed, str):
            params.append(f"s{i}")
            call.append(f"s{i}")
            continue
        _, ndim, strided = parsed
        shape = [f"n{i}_{d}" for d in range(ndim)]
        params += [f"p{i}"] + shape
        shape_t = f"({', '.join(shape)},)"
        expr = f"carray(p{i}, {shape_t})"
        if strided:
            steps = [f"t{i}_{d}" for d in range(ndim)]
            params += steps
            expr = f"as_strided({expr}, shape={shape_t}, strides=({', '.join(steps)},))"
        if readonly[i]:
            expr = f"readonly_view({expr})"
        lines.append(f"    a{i} = {expr}")
        call.append(f"a{i}")
    body = f"fn({', '.join(call)})"
    lines.append(f"    return {body}" if returns else f"    {body}")
    return f"def entry({', '.join(params)}):\n" + "\n".join(lines) + "\n"


def build_entry(fn: Any, signature: tuple[str, ...], readonly: tuple[bool, ...]) -> BuiltEntry:
    """Compile the C entry of one (function, signature) and emit its object code."""
    import numba
    from numba import types

    name = kernel_name(fn)
    dispatcher = getattr(fn, "dispatcher", fn)
    try:
        parsed = [parse_spec(s) for s in signature]
    except ValueError as err:
        raise AotError(f"kernel {name}: {err}") from None
    argtypes = tuple(_numba_types(p, r) for p, r in zip(parsed, readonly))
    dispatcher.compile(argtypes)   # already compiled by the recording run: a lookup
    restype = dispatcher.overloads[argtypes].signature.return_type
    restype_name = "void" if restype == types.none else str(restype)
    if restype_name == "boolean":
        restype_name = "bool"
    if restype_name not in RETURN_CTYPES:
        raise AotError(f"kernel {name} returns {restype}; precompiled entries return "
                       f"nothing or a scalar")
    c_args = []
    for p in parsed:
        if isinstance(p, str):
            c_args.append(_numba_types(p, False))
        else:
            dtype, ndim, strided = p
            nb_dtype = types.boolean if dtype == "bool" else getattr(types, dtype)
            c_args += [types.CPointer(nb_dtype)] + [types.int64] * (ndim * (2 if strided else 1))
    c_restype = types.void if restype_name == "void" else restype
    namespace = {"fn": dispatcher, "carray": numba.carray,
                 "as_strided": np.lib.stride_tricks.as_strided,
                 "readonly_view": _readonly_view()}
    source = entry_source(signature, readonly, restype_name != "void")
    exec(compile(source, f"<graphcnn aot entry for {name}>", "exec"), namespace)  # our source
    cfunc = numba.cfunc(c_restype(*c_args), nopython=True, cache=False)(namespace["entry"])
    library = cfunc._library
    if library.has_dynamic_globals:
        raise AotError(f"kernel {name} refers to process-specific objects; it cannot be "
                       f"precompiled")
    extra = {f.__name__ for f in getattr(library, "_reload_init", ())} - {"_reload_parfors"}
    if extra:
        raise AotError(f"kernel {name} needs load-time initializers {sorted(extra)}")
    module = library._final_module.clone()
    for old, new in UNPICKLING_HOOKS.items():
        for fn_ref in module.functions:
            if fn_ref.name == old and fn_ref.is_declaration:
                fn_ref.name = new
    obj = bytes(library._codegen._tm.emit_object(module))
    imports = sorted(undefined_symbols(obj))
    if any(sym in UNPICKLING_HOOKS for sym in imports):
        raise AotError(f"kernel {name}: object code still refers to an unpickling hook")
    return BuiltEntry(name, tuple(signature), restype_name, cfunc.native_name, obj, imports)


# ---- object files -----------------------------------------------------------------------
def undefined_symbols(obj: bytes) -> set[str]:
    """The symbols an ELF64 little-endian object needs from outside (empty set for other
    formats, which are not inspected). Raises ValueError on a malformed ELF file."""
    return elf_symbols(obj)[0]


def elf_symbols(obj: bytes) -> tuple[set[str], set[str]]:
    """(undefined, defined) symbol names of an ELF64 little-endian object; two empty sets
    for other formats. Raises ValueError on a malformed ELF file."""
    if obj[:4] != b"\x7fELF":   # LLVM aborts the process on an object it cannot parse
        if sys.platform.startswith("linux"):
            raise ValueError("not an ELF object file")
        return set(), set()
    if len(obj) < 64 or obj[4] != 2 or obj[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF object")
    try:
        shoff, = struct.unpack_from("<Q", obj, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
        if shentsize != 64:
            raise ValueError("bad ELF section header size")
        sections = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * 64)
                    for i in range(shnum)]
        names: set[str] = set()
        defined: set[str] = set()
        for sh in sections:
            if sh[1] != 2:  # SHT_SYMTAB
                continue
            offset, size, link, entsize = sh[4], sh[5], sh[6], sh[9]
            if entsize != 24 or link >= len(sections):
                raise ValueError("bad ELF symbol table")
            str_off, str_size = sections[link][4], sections[link][5]
            if offset + size > len(obj) or str_off + str_size > len(obj):
                raise ValueError("ELF table out of bounds")
            for k in range(size // 24):
                st_name, st_info, _, st_shndx = struct.unpack_from("<IBBH", obj, offset + 24 * k)
                if st_name == 0:
                    continue
                if st_name >= str_size:
                    raise ValueError("ELF symbol name out of bounds")
                end = obj.find(b"\0", str_off + st_name, str_off + str_size)
                if end < 0:
                    raise ValueError("unterminated ELF symbol name")
                symbol = obj[str_off + st_name:end].decode("ascii")
                if symbol:   # LLVM asserts on an empty name
                    (names if st_shndx == 0 else defined).add(symbol)
        return names, defined
    except (struct.error, UnicodeDecodeError) as err:
        raise ValueError(f"malformed ELF object: {err}") from None


# ---- loading (no compiler) ----------------------------------------------------------------
_RUNTIME_LOCK = threading.Lock()
_RUNTIME_READY = False
_RAISED = threading.local()  # .messages: what kernels raised in this thread (the stubs')


def _exception_stub(data: int, size: int, hashed: int) -> Any:
    message = ("a precompiled kernel raised an exception (its details are not available: "
               "artifacts never unpickle the exception data embedded in their code)")
    _RAISED.__dict__.setdefault("messages", []).append(message)
    return RuntimeError(message)


def _dynamic_exception_stub(static: Any, dynamic: Any) -> Any:
    message = (f"a precompiled kernel raised an exception with arguments {dynamic!r} (its "
               f"type and message are not available: artifacts never unpickle them)")
    _RAISED.__dict__.setdefault("messages", []).append(message)
    return RuntimeError(message)


_STUBS = (
    ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)(
        _exception_stub),
    ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object, ctypes.py_object)(
        _dynamic_exception_stub),
)


def register_runtime_symbols() -> None:
    """Make the symbols Numba-generated code calls resolvable by llvmlite, as Numba's own
    target context and NRT initialization would, without compiling anything."""
    global _RUNTIME_READY
    with _RUNTIME_LOCK:
        if _RUNTIME_READY:
            return
        import llvmlite.binding as llvm
        from numba import _helperlib
        from numba.core import intrinsics
        from numba.core.base import _load_global_helpers
        from numba.core.runtime import _nrt_python
        from numba.np.ufunc.parallel import _launch_threads

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _load_global_helpers()   # numba_* helpers, Py_None, PyExc_*
        for py_name, address in _nrt_python.c_helpers.items():
            llvm.add_symbol(py_name if py_name.startswith("_") else f"NRT_{py_name}", address)
        for fname in intrinsics.INTR_MATH:
            llvm.add_symbol(fname, _helperlib.c_helpers[fname])
        _launch_threads()        # the threading layer: numba_parallel_for and friends
        for stub, symbol in zip(_STUBS, UNPICKLING_HOOKS.values()):
            llvm.add_symbol(symbol, ctypes.cast(stub, ctypes.c_void_p).value)
        _RUNTIME_READY = True


_ENVIRONMENT: Any = None


def _environment() -> Any:
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        from numba.core.environment import Environment
        _ENVIRONMENT = Environment({"__name__": "graphcnn.backends.cpu.aot"})
    return _ENVIRONMENT


class Entry:
    """One precompiled (kernel, signature): call with the launch's arguments."""

    __slots__ = ("name", "cfunc", "plan")

    def __init__(self, name: str, signature: Sequence[str], restype: str, address: int) -> None:
        self.name = name
        argtypes: list[Any] = []
        self.plan: list[tuple[bool, bool]] = []   # (is array, strided) per argument
        for spec in signature:
            parsed = parse_spec(spec)
            if isinstance(parsed, str):
                argtypes.append(SCALAR_CTYPES[parsed])
                self.plan.append((False, False))
            else:
                _, ndim, strided = parsed
                argtypes += [ctypes.c_void_p] + [ctypes.c_int64] * (ndim * (2 if strided else 1))
                self.plan.append((True, strided))
        self.cfunc = ctypes.CFUNCTYPE(RETURN_CTYPES[restype], *argtypes)(address)

    def __call__(self, args: Sequence[Any]) -> Any:
        flat: list[Any] = []
        for a, (is_array, strided) in zip(args, self.plan):
            if is_array:
                flat.append(a.ctypes.data)
                flat.extend(a.shape)
                if strided:
                    flat.extend(a.strides)
            else:
                flat.append(a)
        result = self.cfunc(*flat)
        raised = getattr(_RAISED, "messages", None)
        if raised:
            message = raised.pop()
            raised.clear()
            raise RuntimeError(f"kernel {self.name}: {message}")
        return result


class EntryTable:
    """Precompiled entries by (kernel name, signature), and the engine holding their code."""

    def __init__(self, entries: dict[tuple[str, tuple[str, ...]], Entry], engine: Any) -> None:
        self.entries = entries
        self._engine = engine       # keeps the machine code alive
        self._warned: set[tuple[str, tuple[str, ...]]] = set()

    def missing(self, name: str, signature: tuple[str, ...]) -> None:
        if (name, signature) not in self._warned:
            self._warned.add((name, signature))
            warnings.warn(f"the artifact has no precompiled code for kernel {name} with "
                          f"arguments ({', '.join(signature)}); compiling it with Numba now",
                          RuntimeWarning, stacklevel=4)

    def __len__(self) -> int:
        return len(self.entries)


def load_entries(entries: Sequence[tuple[str, Sequence[str], str, str, bytes]]) -> EntryTable:
    """entries: (kernel name, signature, return type, symbol, object code). Raises AotError
    if an object needs a symbol this process cannot provide or lacks its entry symbol."""
    import llvmlite.binding as llvm

    register_runtime_symbols()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    host = host_target()
    tm = target.create_target_machine(cpu=host["cpu_name"], features=host["cpu_features"],
                                      reloc="static", codemodel="jitdefault", jit=True)
    module = llvm.parse_assembly("")
    module.triple = llvm.get_process_triple()
    engine = llvm.create_mcjit_compiler(module, tm)
    all_defined: set[str] = set()
    for obj, name in {e[4]: e[0] for e in reversed(entries)}.items():   # each object once
        try:
            needed, defined = elf_symbols(obj)
            all_defined |= defined
        except ValueError as err:
            raise AotError(f"object code of kernel {name}: {err}") from None
        unresolved = sorted(s for s in needed if not llvm.address_of_symbol(s))
        if unresolved:
            raise AotError(f"object code of kernel {name} needs symbols this process does not "
                           f"provide: {', '.join(unresolved[:5])}")
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    # Numba's generated code reads its function's Environment (a Python object the JIT
    # sets after compiling) when it raises with runtime values; unset, that error path
    # leaves the GIL held. Every environment points at one empty Environment instead.
    for symbol in (s for s in all_defined if s.startswith("_ZN08NumbaEnv")):
        address = engine.get_global_value_address(symbol)
        if address:
            ctypes.c_void_p.from_address(address).value = id(_environment())
    table: dict[tuple[str, tuple[str, ...]], Entry] = {}
    for name, signature, restype, symbol, _ in entries:
        known = symbol in all_defined if all_defined else bool(symbol)  # LLVM asserts on ""
        address = engine.get_function_address(symbol) if known else 0
        if not address:
            raise AotError(f"object code of kernel {name} does not define {symbol}")
        table[(name, tuple(signature))] = Entry(name, signature, restype, address)
    return EntryTable(table, engine)
