"""Output files created without following a symbolic link anywhere below the data root.

A path check followed by an open by path can be raced: a user who can write in the data
root swaps a folder for a symbolic link in between, and the server (root) creates its file
wherever the link points. Here nothing is resolved by path below the data root: the data
root is opened once, every folder below it is opened from its parent's descriptor with
``O_NOFOLLOW`` (a symbolic link, or a loop of them, is refused), and the file is created in
the last folder with ``O_EXCL | O_NOFOLLOW`` as ``writer_user_id``. Whatever is renamed or
swapped meanwhile, the file is created in a real folder inside the data root, or not at all.

The HDF5 library then opens the created file through ``/proc/self/fd/<fd>``, which names the
open file itself, not a path that could be swapped.

The file is created under a hidden temporary name (``.std_daq.<random>.tmp``) in its folder and given its
name by :meth:`CreatedFile.publish` once it is readable (``renameat2`` with ``RENAME_NOREPLACE``, so a file
that took the name meanwhile is never replaced): a reader that opens the file the moment its name appears
finds a complete HDF5 file, never one the writer still holds locked.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import h5py

from daq_server.write.file_owner import FileOwnerError, as_file_user

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4095
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_NOREPLACE = 1
_libc = ctypes.CDLL(None, use_errno=True)


class OutputPathError(ValueError):
    """An output file that cannot be created; the message says why, for the user."""


@dataclass(frozen=True)
class OutputPath:
    """An output file split into the trusted data root and the names below it."""

    root: str
    folders: tuple[str, ...]
    name: str

    @property
    def path(self) -> str:
        return os.path.join(self.root, *self.folders, self.name)

    @property
    def folder(self) -> str:
        return os.path.join(self.root, *self.folders)


def split_output_path(output_file: str, data_root: str | os.PathLike) -> OutputPath:
    """Check ``output_file`` lexically (absolute, inside the data root, no '.' or '..',
    names of at most 255 bytes); OutputPathError with the reason."""
    if not isinstance(output_file, str) or "\0" in output_file:
        raise OutputPathError("output_file must be a path string")
    if not output_file.startswith("/"):
        raise OutputPathError(f"output_file must be an absolute path, not '{output_file}'")
    try:
        encoded = output_file.encode()
    except UnicodeEncodeError:
        raise OutputPathError("output_file is not valid UTF-8") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise OutputPathError(f"output_file is {len(encoded)} bytes long; at most {MAX_PATH_BYTES} are allowed")
    parts = [p for p in output_file.split("/") if p]
    roots = {os.path.abspath(data_root), os.path.realpath(data_root)}
    if "." in parts or ".." in parts:
        raise OutputPathError(
            f"output_file must lie inside the data root {os.path.realpath(data_root)} and name it without "
            f"'.' or '..' components, not '{output_file}'"
        )
    for part in parts:
        if len(part.encode()) > MAX_NAME_BYTES:
            raise OutputPathError(f"a file or folder name in output_file is longer than {MAX_NAME_BYTES} bytes")
    for root in sorted(roots, key=len, reverse=True):
        root_parts = [p for p in root.split("/") if p]
        if parts[: len(root_parts)] == root_parts and len(parts) > len(root_parts):
            below = parts[len(root_parts) :]
            return OutputPath(root=root, folders=tuple(below[:-1]), name=below[-1])
    raise OutputPathError(
        f"output_file must lie inside the data root {os.path.realpath(data_root)}, not '{output_file}'"
    )


def _folder_error(error: OSError, where: str, uid: int) -> OutputPathError:
    if error.errno == errno.ELOOP:
        return OutputPathError(f"{where} is a symbolic link; links are not followed below the data root")
    if error.errno == errno.ENOENT:
        return OutputPathError(f"The folder {where} does not exist; create it first")
    if error.errno == errno.ENOTDIR:
        return OutputPathError(f"{where} is not a folder")
    if error.errno in (errno.EACCES, errno.EPERM):
        who = f"User id {uid}" if uid > 0 else "The server"
        return OutputPathError(f"{who} may not enter the folder {where}")
    return OutputPathError(f"Cannot open the folder {where}: {error.strerror}")


def _is_link(name: str, folder_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _make_folder(name: str, parent_fd: int, where: str, uid: int) -> None:
    """Create folder ``name`` in ``parent_fd`` (at ``where``) unless it exists."""
    try:
        os.mkdir(name, dir_fd=parent_fd)
    except FileExistsError:
        pass
    except OSError as error:
        who = f"User id {uid}" if uid > 0 else "The server"
        raise OutputPathError(f"{who} cannot create the folder {where}: {error.strerror}") from None


@contextmanager
def open_folder(target: OutputPath, uid: int, create_from: int | None = None) -> Iterator[int]:
    """A descriptor of the output file's folder, reached from the data root without following
    links. The data root (the operator's choice) is opened as the server, the folders below it
    as ``uid``: their permissions count for that user. ``create_from``: the folders from this index
    of ``target.folders`` on are created as ``uid`` where they do not exist."""
    try:
        fd = os.open(target.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise OutputPathError(f"The data root {target.root} cannot be opened: {error.strerror}") from None
    try:
        where = target.root
        with as_file_user(uid):
            for index, name in enumerate(target.folders):
                where = os.path.join(where, name)
                if create_from is not None and index >= create_from:
                    _make_folder(name, fd, where, uid)
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as error:
                    if error.errno == errno.ENOTDIR and _is_link(name, fd):
                        error = OSError(errno.ELOOP, "is a symbolic link")
                    raise _folder_error(error, where, uid) from None
                os.close(fd)
                fd = child
        yield fd
    finally:
        os.close(fd)


def make_folders(target: OutputPath, n_folders: int, uid: int) -> None:
    """Create the last ``n_folders`` folders of ``target``'s path that do not exist yet, as ``uid``, each in
    its parent reached from the data root without following links (ophyd-async's ``create_dir_depth``).

    OutputPathError if ``n_folders`` reaches up to the data root or above it (folders are made only inside
    it), or a folder cannot be made."""
    if n_folders > len(target.folders):
        raise OutputPathError(
            f"create_folders is {n_folders}, but only {len(target.folders)} folder(s) of {target.folder} lie "
            f"inside the data root {target.root}; folders are created only inside it"
        )
    try:
        with open_folder(target, uid, create_from=len(target.folders) - n_folders):
            pass
    except FileOwnerError as error:
        raise OutputPathError(str(error)) from None


def _refuse_if_taken(target: OutputPath, folder: int) -> None:
    """OutputPathError if anything (a file, a link) has ``target``'s name in ``folder`` already."""
    try:
        os.stat(target.name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return
    raise OutputPathError(f"output_file {target.path} exists already; choose a new file name")


def check_creatable(target: OutputPath, uid: int) -> None:
    """OutputPathError unless ``uid`` could create the file now (the creation checks again)."""
    try:
        with open_folder(target, uid) as folder, as_file_user(uid):
            _refuse_if_taken(target, folder)
            if not os.access(".", os.W_OK | os.X_OK, dir_fd=folder, effective_ids=True):
                who = f"User id {uid}" if uid > 0 else "The server"
                raise OutputPathError(f"{who} may not create files in {target.folder}")
    except FileOwnerError as error:
        raise OutputPathError(str(error)) from None


@dataclass
class CreatedFile:
    """A new, empty output file, open read-write, and the folder that holds it (open until
    ``close_folder``, so that ``remove`` finds the file whatever is renamed meanwhile)."""

    target: OutputPath
    uid: int
    fd: int
    folder_fd: int | None
    device: int
    inode: int
    temporary_name: str | None = None
    """The hidden name the file has until :meth:`publish` gives it ``target.name`` (None: it has it)."""

    @property
    def proc_path(self) -> str:
        """A name of the open file itself (a path that cannot be swapped)."""
        return f"/proc/self/fd/{self.fd}"

    def open_hdf5(self, mode: str = "w", attempts: int = 5, fileobj=None, **kwargs) -> h5py.File:
        """The created file, opened by the HDF5 library through ``proc_path``, or through ``fileobj`` (a file
        object over ``fd`` for h5py's ``fileobj`` driver, e.g. ``direct_file.DirectFile``).

        HDF5 checks a name that is a symbolic link by resolving its target by path, which fails
        (safely) while someone renames the folders on that path; that check is tried again. The open
        is checked against the file's permissions like any open, so it is made as the file's user (a
        server without CAP_DAC_OVERRIDE may not write another user's file as itself); HDF5's look at the
        real path then walks the folders from ``/`` as that user too, so where that user may not pass
        (a data root inside a private folder) the open is tried once more as the server."""
        if fileobj is not None:  # no name at all: nothing to resolve
            return h5py.File(fileobj, mode, **kwargs)
        for attempt in range(attempts):
            try:
                return _as_user_else_server(self.uid, lambda: h5py.File(self.proc_path, mode, **kwargs))
            except OSError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.001 * (attempt + 1))
        raise AssertionError("unreachable")

    def reopen(self, flags: int) -> int:
        """A second descriptor of the created file itself (``proc_path``) with ``flags`` (e.g. ``O_DIRECT``),
        opened as the file's user like :meth:`open_hdf5`; OSError if it cannot be."""
        return _as_user_else_server(self.uid, lambda: os.open(self.proc_path, flags | os.O_CLOEXEC))

    def publish(self) -> None:
        """Give the file its name (atomically, never replacing a file that took the name meanwhile);
        OutputPathError if the name is taken (the file is removed then)."""
        if self.temporary_name is None:
            return
        if self.folder_fd is None:
            raise OutputPathError(f"{self.target.path}: its folder was closed before the file got its name")
        try:
            with as_file_user(self.uid):
                _rename_noreplace(self.folder_fd, self.temporary_name, self.target.name)
        except FileExistsError:
            self.remove()
            raise OutputPathError(f"output_file {self.target.path} exists already; choose a new file name") from None
        except OSError as error:
            self.remove()
            raise OutputPathError(f"Cannot give {self.target.path} its name: {error.strerror}") from None
        self.temporary_name = None

    def remove(self) -> None:
        """Remove the file, if its name in its folder still holds it (never another file)."""
        if self.folder_fd is None:
            return
        name = self.temporary_name or self.target.name
        try:
            with as_file_user(self.uid):
                info = os.stat(name, dir_fd=self.folder_fd, follow_symlinks=False)
                if (info.st_dev, info.st_ino) == (self.device, self.inode):
                    os.unlink(name, dir_fd=self.folder_fd)
        except OSError:
            pass  # moved or removed meanwhile: nothing of ours is left under that name

    def close_folder(self) -> None:
        if self.folder_fd is not None:
            os.close(self.folder_fd)
            self.folder_fd = None

    def close(self) -> None:
        """Close the file's own descriptor (HDF5 keeps its own while it has the file open)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@contextmanager
def open_hdf5_below_root(target: OutputPath, uid: int) -> Iterator[h5py.File]:
    """An existing file below the data root opened read-only by HDF5, reached the same way files are created
    (no link followed, folders and file opened as ``uid``): a swapped folder never makes the server read
    another file."""
    try:
        with open_folder(target, uid) as folder, as_file_user(uid):
            try:
                fd = os.open(target.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            except OSError as error:
                raise OutputPathError(f"Cannot open {target.path}: {error.strerror}") from None
    except FileOwnerError as error:
        raise OutputPathError(str(error)) from None
    try:
        with _as_user_else_server(uid, lambda: h5py.File(f"/proc/self/fd/{fd}", "r")) as file:
            yield file
    finally:
        os.close(fd)


def _as_user_else_server(uid: int, open_file):
    """``open_file()`` as ``uid``; if that fails and ``uid`` is another user, once more as the server."""
    try:
        with as_file_user(uid):
            return open_file()
    except (OSError, FileOwnerError):
        if uid < 1 or uid == os.geteuid():
            raise
    return open_file()


def _rename_noreplace(folder_fd: int, old: str, new: str) -> None:
    """``renameat2(RENAME_NOREPLACE)`` within one folder; where the file system has no such rename, a hard
    link and an unlink (equally atomic: the link fails if the name exists)."""
    if _libc.renameat2(folder_fd, old.encode(), folder_fd, new.encode(), _RENAME_NOREPLACE) == 0:
        return
    code = ctypes.get_errno()
    if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        raise OSError(code, os.strerror(code))
    os.link(old, new, src_dir_fd=folder_fd, dst_dir_fd=folder_fd, follow_symlinks=False)
    os.unlink(old, dir_fd=folder_fd)


def create_output_file(target: OutputPath, uid: int, mode: int = 0o666) -> CreatedFile:
    """Create the file as ``uid`` (``O_EXCL``, no link followed anywhere below the data root), under a hidden
    temporary name until :meth:`CreatedFile.publish`; OutputPathError if its name is taken already."""
    temporary = f".std_daq.{secrets.token_hex(8)}.tmp"
    try:
        with open_folder(target, uid) as folder, as_file_user(uid):
            _refuse_if_taken(target, folder)
            try:
                fd = os.open(temporary, _FILE_FLAGS, mode, dir_fd=folder)
            except FileExistsError:
                raise OutputPathError(f"Cannot create {target.path}: a temporary name was taken") from None
            except OSError as error:
                if error.errno in (errno.EACCES, errno.EPERM):
                    who = f"User id {uid}" if uid > 0 else "The server"
                    raise OutputPathError(f"{who} may not create files in {target.folder}") from None
                raise OutputPathError(f"Cannot create {target.path}: {error.strerror}") from None
            folder_fd = os.dup(folder)
    except FileOwnerError as error:
        raise OutputPathError(str(error)) from None
    info = os.fstat(fd)
    return CreatedFile(target, uid, fd, folder_fd, info.st_dev, info.st_ino, temporary_name=temporary)
