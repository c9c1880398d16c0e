"""Output paths: the rules by which tessera writes a folder or a file, and the atomic writes.

The rule (README, docs/cli.md): tessera creates a new path; it replaces a folder only if tessera
wrote it (its record file, manifest.json or build_result.json, lists every file in it and none
was changed since) and then atomically; it refuses everything else with one line naming the
path and the reason, before it writes anything.

This module lives in the root package (`tessera.outpaths`) because both `tessera.generators`
(generate, unit, regress, report, CLI) and `tessera.fpga` (bitstream builds) use it, and
`tessera.fpga` does not import `tessera.generators`. It imports only the standard library.
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import tempfile


__all__ = ["OutputPathError", "OutputPlan", "quote", "check_output_dir", "check_output_file",
           "write_outputs", "write_output_file", "file_table", "foreign_entry", "swap_in",
           "make_parents", "remove_created", "new_tmp_dir"]


class OutputPathError(ValueError):
    """An output path tessera refuses to write; the message names the path and the reason."""


def quote(value, limit=100):
    """``repr`` of ``value`` (a path or any value) for a one-line message, cut in the middle
    to about ``limit`` characters (newlines and other control characters come out escaped)."""
    text = repr(os.fspath(value) if isinstance(value, os.PathLike) else value)
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return f"{text[:half]}...{text[-half:]} ({len(text)} characters)"


#: Hidden names next to an output folder while it is written (short: any legal name fits).
_TMP_PREFIX = ".tessera-tmp-"
_OLD_PREFIX = ".tessera-old-"

#: Largest record file tessera reads back (its own are a few hundred kB at most).
_RECORD_LIMIT = 64 << 20


def _kind_of(st):
    import stat
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return "an existing file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _lstat(path):
    import errno
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            return None          # reported by the name-length check
        raise


def _name_max(folder):
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _access_ok(folder):
    return os.access(folder, os.W_OK | os.X_OK)


def _read_only(folder):
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _check_writable(folder, what):
    """``folder`` (an existing directory) must let us create and rename entries."""
    if _access_ok(folder) and not _read_only(folder):
        return
    reason = "is on a read-only file system" if _read_only(folder) else "is not writable"
    raise OutputPathError(f"{what}: {quote(str(folder))} {reason}; choose another location")


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_record(folder, records):
    """(name, data) of the first record file (a regular JSON file holding an object) found in
    ``folder``, or (None, None)."""
    import stat
    for name in records:
        st = _lstat(folder / name)
        if st is None or not stat.S_ISREG(st.st_mode) or st.st_size > _RECORD_LIMIT:
            continue
        try:
            data = json.loads((folder / name).read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return name, data
    return None, None


def _recorded_files(record_name, data):
    """{relative path: sha256 or None} that a record says tessera wrote, or None if the record
    is not one of tessera's. Records without a ``files`` table are from earlier versions: their
    files are inferred from the fields they did have (no hashes)."""
    files = data.get("files")
    if isinstance(files, dict) and "*legacy*" not in files:
        if all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            return dict(files)
        return None
    if record_name == "manifest.json" and data.get("kind") in ("core", "unit") \
            and isinstance(data.get("verilog"), str) and isinstance(data.get("top"), str):
        names = {data["verilog"]: None}
        if data["kind"] == "core":
            names[f"{data['top']}_defs.h"] = None
        return names
    if record_name == "build_result.json" and isinstance(data.get("bitstream"), str):
        return {"*legacy*": ("build", data["bitstream"].rsplit(".", 1)[0])}
    if record_name == "summary.json" and "config_digest" in data and "tests" in data:
        return {"*legacy*": ("regress", "")}
    return None


def _legacy_file(kind, stem, rel):
    """Whether ``rel`` is a file that an earlier tessera wrote into a folder of ``kind``."""
    import re
    if kind == "build":
        return "/" not in rel and (rel in ("build.log", "build_result.json")
                                   or re.fullmatch(rf"build_{re.escape(stem)}\.(sh|bat)", rel)
                                   or rel.startswith(stem + "."))
    return (rel in ("plan.json", "results.xml", "summary.json")
            or re.fullmatch(r"results-[^/]*\.jsonl", rel) is not None
            or re.fullmatch(r"rtl/(manifest\.json|[a-z][a-z0-9_]*(\.v|_defs\.h))", rel)
            is not None)


def foreign_entry(folder, records):
    """Why tessera may not replace the folder ``folder``, or None if it may.

    It may if the folder is empty, or if it holds one of the ``records`` files written by
    tessera and every other entry is a regular file that record lists, unchanged since (its
    SHA-256 matches where the record has one).
    """
    import stat
    folder = pathlib.Path(folder)
    entries = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        for d in list(dirs):
            if os.path.islink(os.path.join(root, d)):
                names.append(d)
                dirs.remove(d)
        for n in names:
            entries.append(os.path.relpath(os.path.join(root, n), folder))
        if len(entries) > 100_000:
            return "holds more than 100000 files"
    if not entries:
        return None
    record, data = _read_record(folder, records)
    if record is None:
        return (f"is not empty and holds no {' or '.join(records) or 'record'} written by "
                f"tessera (it holds {quote(sorted(entries)[0], 60)})")
    files = _recorded_files(record, data)
    if files is None:
        return f"holds a {record} that tessera did not write"
    legacy = files.pop("*legacy*", None)
    for rel in sorted(entries):
        if rel == record:
            continue
        st = os.lstat(folder / rel)
        if not stat.S_ISREG(st.st_mode):
            return f"holds {quote(rel, 60)}, {_kind_of(st)} tessera did not write"
        if legacy is not None:
            if not _legacy_file(*legacy, rel):
                return f"holds {quote(rel, 60)}, which tessera did not write"
            continue
        if rel not in files:
            return f"holds {quote(rel, 60)}, which tessera did not write"
        if files[rel] is not None and _sha256_file(folder / rel) != files[rel]:
            return f"holds {quote(rel, 60)}, which was changed after tessera wrote it"
    return None


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """What `check_output_dir` found: the absolute ``path``, whether it ``exists`` (a folder
    tessera wrote, to be replaced) and the missing parent folders it will create."""
    path: pathlib.Path
    exists: bool
    create: tuple


def check_output_dir(path, *, records=("manifest.json",), what="output folder"):
    """Check that tessera may write the folder ``path``; raise `OutputPathError` if not.

    Nothing is touched. Refused: the working directory or one of its parents, an existing
    regular file, a FIFO, device node, socket or symbolic link, a folder holding files tessera
    did not write (see `foreign_entry`), a path below a regular file, an unwritable or
    read-only location, and a name longer than the file system allows.
    """
    import stat
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise OutputPathError(f"{what}: {quote(text)} is empty; allowed: a folder path")
    if "\0" in text:
        raise OutputPathError(f"{what}: {quote(text)} contains a NUL character")
    p = pathlib.Path(os.path.abspath(text))
    real = pathlib.Path(os.path.realpath(p))
    cwd = pathlib.Path(os.path.realpath(os.getcwd()))
    if real == cwd:
        raise OutputPathError(f"{what}: {quote(text)} is the working directory; tessera never "
                              f"replaces it: name a new folder, e.g. 'out'")
    if real in cwd.parents:
        raise OutputPathError(f"{what}: {quote(text)} is a parent of the working directory; "
                              f"tessera never replaces it")
    if p == pathlib.Path(p.anchor):
        raise OutputPathError(f"{what}: {quote(text)} is the file-system root")
    # The nearest existing ancestor: it must be a folder we can write; every missing part
    # must be a name the file system accepts.
    missing = []
    probe = p
    while True:
        st = _lstat(probe)
        if st is not None:
            break
        missing.append(probe)
        probe = probe.parent
    ancestor = probe
    if missing:
        if not os.path.isdir(ancestor):
            kind = _kind_of(os.stat(ancestor)) if os.path.exists(ancestor) else _kind_of(st)
            raise OutputPathError(f"{what}: {quote(text)} lies below {quote(str(ancestor))}, "
                                  f"which is {kind}, not a folder")
        limit = _name_max(ancestor)
        for m in missing:
            if len(os.fsencode(m.name)) > limit:
                raise OutputPathError(f"{what}: {quote(text)}: the name {quote(m.name, 40)} "
                                      f"has {len(os.fsencode(m.name))} bytes; allowed: at most "
                                      f"{limit} on this file system")
        if len(os.fsencode(str(p))) >= 4096:
            raise OutputPathError(f"{what}: {quote(text)} is longer than the 4095 bytes a path "
                                  f"may have")
        _check_writable(ancestor, what)
        return OutputPlan(path=p, exists=False, create=tuple(reversed(missing)))
    # The path exists.
    if not stat.S_ISDIR(st.st_mode):
        raise OutputPathError(f"{what}: {quote(text)} is {_kind_of(st)}; tessera writes only "
                              f"new folders or folders it wrote itself; choose another path")
    why = foreign_entry(p, records)
    if why is not None:
        raise OutputPathError(f"{what}: {quote(text)} {why}; tessera replaces only folders it "
                              f"wrote itself: choose a new folder or empty this one")
    _check_writable(p.parent, what)
    return OutputPlan(path=p, exists=True, create=())


def file_table(files):
    """{name: sha256 hex} of ``files`` ({relative name: text}), for a record's ``files``."""
    return {name: hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()
            for name, text in sorted(files.items())}


_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2


def _renameat2(src, dst, flags):
    """Linux ``renameat2``; returns False where the system does not support ``flags``."""
    import ctypes
    import errno
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def _exchange(src, dst):
    """Swap the folders ``src`` and ``dst`` in one step (False: not supported here)."""
    return _renameat2(src, dst, _RENAME_EXCHANGE)


def swap_in(tmp, dst, *, exists):
    """Move the finished folder ``tmp`` to ``dst``. If ``exists``, ``dst`` is a folder that
    tessera wrote (checked by the caller): it is exchanged with ``tmp`` atomically where the
    system allows (Linux ``renameat2``), otherwise moved aside first and put back on failure;
    the old contents are then removed."""
    tmp, dst = pathlib.Path(tmp), pathlib.Path(dst)
    if not exists:
        if not _renameat2(tmp, dst, _RENAME_NOREPLACE):
            os.rename(tmp, dst)
        return
    if _exchange(tmp, dst):
        shutil.rmtree(tmp, ignore_errors=True)      # now the previous output
        return
    old = pathlib.Path(tempfile.mkdtemp(prefix=_OLD_PREFIX, dir=dst.parent))
    os.rmdir(old)
    os.rename(dst, old)
    try:
        os.rename(tmp, dst)
    except BaseException:
        os.rename(old, dst)          # put the previous output back
        raise
    shutil.rmtree(old, ignore_errors=True)


def make_parents(plan):
    """Create the missing parent folders of ``plan.path``; returns those created (newest
    last) for `remove_created`."""
    made = []
    for d in plan.create[:-1]:
        try:
            os.mkdir(d)
        except FileExistsError:
            # Another process made it between the plan and now (two builds into sibling
            # folders): fine if it is a folder, and not ours to remove later.
            if not os.path.isdir(d):
                raise
            continue
        made.append(d)
    return made


def remove_created(made):
    """Remove the folders `make_parents` created, if still empty (after a failure)."""
    for d in reversed(made):
        try:
            os.rmdir(d)
        except OSError:
            break


def new_tmp_dir(parent):
    """A hidden temporary folder in ``parent`` with the permissions of a normal folder."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=parent))
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


def write_outputs(out_dir, files, *, records=("manifest.json",), what="output folder"):
    """Write ``files`` ({relative name: text}) into the folder ``out_dir``, atomically.

    ``out_dir`` must pass `check_output_dir` (new, or written by tessera: one of ``records``
    is among ``files`` and lists the others). Everything is written into a hidden temporary
    sibling first, which then replaces ``out_dir`` in one step: an interrupted or failed run
    leaves the previous folder (or nothing, and no parent folder it created) in place.
    """
    plan = check_output_dir(out_dir, records=records, what=what)
    made = make_parents(plan)
    tmp = None
    try:
        tmp = new_tmp_dir(plan.path.parent)
        for rel, text in files.items():
            p = tmp / rel
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text)
            except OSError as e:
                if e.errno is None:
                    raise
                # Name the file the user asked for, not the hidden temporary one.
                raise OSError(e.errno, e.strerror, str(plan.path / rel)) from None
        # Checked again just before the swap: the folder may have changed meanwhile.
        plan = check_output_dir(out_dir, records=records, what=what)
        swap_in(tmp, plan.path, exists=plan.exists)
        tmp = None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        remove_created(made)
        raise


def check_output_file(path, *, marker, what="output file"):
    """Check that tessera may write the file ``path``: new, or a regular file whose first 4 kB
    hold ``marker`` (bytes that tessera puts into every such file it writes). Returns the
    absolute path; raises `OutputPathError` (nothing is touched)."""
    import stat
    text = os.fspath(path)
    if not isinstance(text, str) or not text or "\0" in text:
        raise OutputPathError(f"{what}: {quote(text)} is not a usable file name")
    p = pathlib.Path(os.path.abspath(text))
    st = _lstat(p)
    if st is None:
        # Same rules as for a new folder (ancestors, name length, writable).
        check_output_dir(p, records=(), what=what)
        return p
    if not stat.S_ISREG(st.st_mode):
        raise OutputPathError(f"{what}: {quote(text)} is {_kind_of(st)}; allowed: a new file "
                              f"or one tessera wrote")
    try:
        with open(p, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise OutputPathError(f"{what}: {quote(text)} cannot be read ({e.strerror})") from None
    if marker not in head:
        raise OutputPathError(f"{what}: {quote(text)} is an existing file tessera did not "
                              f"write; choose another name")
    _check_writable(p.parent, what)
    return p


def write_output_file(path, data, *, marker, what="output file"):
    """Write bytes ``data`` (which must contain ``marker`` in its first 4 kB) to the file
    ``path`` atomically, under the rules of `check_output_file`."""
    if marker not in data[:4096]:
        raise ValueError("write_output_file: data must carry the marker in its first 4 kB")
    p = check_output_file(path, marker=marker, what=what)
    plan = OutputPlan(path=p, exists=False, create=())
    if not p.parent.exists():
        plan = check_output_dir(p, records=(), what=what)
    made = make_parents(plan)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        check_output_file(p, marker=marker, what=what)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        remove_created(made)
        raise
    return p
