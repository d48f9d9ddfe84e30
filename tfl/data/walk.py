"""Walking photo folders as people have them: links followed, each real folder and file once.

A link back to a folder that contains it (a loop) is named in one line and not followed; the
same file reached twice (a hard link, a second link) counts once; broken links, pipes and
device files are skipped with a line each. The real tree is walked before links, so files
keep their own paths, and without recursion, so deep trees cannot overflow the stack.
"""

from __future__ import annotations

import collections
import os
import stat
import typing


def class_folders(folder: str) -> typing.List[str]:
    """Sorted names of the visible sub-folders of `folder` (links to folders count; unreadable: none)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return sorted(e.name for e in entries if not e.name.startswith(".") and _is_dir(e))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links; a link loop (ELOOP) or no permission is no folder
    except OSError:
        return False


def is_file(entry: os.DirEntry) -> bool:
    """`entry.is_file()` (links followed), False where that fails (a loop of links, no permission)."""
    try:
        return entry.is_file()
    except OSError:
        return False


class Walk:
    """The visible files below a folder, each real folder and file once, and what was odd on the way.

    Links are followed, but a link back to a folder above it (a loop) is not, and a folder or
    file reached a second time (two links to one place) is listed once. The real tree is walked
    first, so files keep their own paths; links only add what is not there already. Unreadable
    folders, loops and duplicates end in `notes`, one line each; broken links and special files
    stay in `files`, so that the file checks report each of them by path.

    Args:
        root: the folder to walk.

    Attributes:
        files: the file paths, in a stable order (each folder's files, then its sub-folders).
        notes: one line per folder that was not walked (loop, duplicate, unreadable).

    Examples:
        >>> Walk("photos/train/bees").files[:1]
        ['photos/train/bees/1.jpg']
    """

    def __init__(self, root: str):
        self.root = root
        self.files: typing.List[str] = []
        self.notes: typing.List[str] = []
        self._dirs: typing.Dict[typing.Tuple[int, int], str] = {}  # (device, inode) -> first path
        self._file_ids: typing.Set[typing.Tuple[int, int]] = set()
        self._twice = 0
        try:
            st = os.stat(root)
        except OSError as e:
            self.notes.append(f"{root}: cannot read this folder ({e.strerror}): its images are left out")
            return
        links: typing.Deque[str] = collections.deque()
        self._walk(root, (st.st_dev, st.st_ino), links)
        while links:  # what the links add, in order; walking a linked folder can find more links
            self._follow(links.popleft(), links)
        if self._twice:
            self.notes.append(f"{root}: {self._twice} file(s) reached a second time through links "
                              "(or hard links) counted once")

    def _walk(self, top: str, top_key, links) -> None:
        """Depth first, each folder's files before its sub-folders; a stack, not recursion (trees can
        be deeper than Python's recursion limit, e.g. after a copy that followed a loop)."""
        stack = [(top, top_key)]
        while stack:
            folder, key = stack.pop()
            if key in self._dirs:  # bind mounts can repeat a folder too
                continue
            self._dirs[key] = folder
            try:
                entries = sorted((e for e in os.scandir(folder) if not e.name.startswith(".")),
                                 key=lambda e: e.name)
            except OSError as e:
                self.notes.append(f"{folder}: cannot read this folder ({e.strerror}): its images are left out")
                continue
            subdirs = []
            for entry in entries:
                try:
                    if entry.is_symlink():
                        links.append(entry.path)
                    elif entry.is_dir(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        subdirs.append((entry.path, (st.st_dev, st.st_ino)))
                    else:
                        self._add_file(entry.path, entry.stat(follow_symlinks=False))
                except OSError:
                    self.files.append(entry.path)  # vanished or unreadable: the file check says which
            stack.extend(reversed(subdirs))

    def _add_file(self, path: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if key in self._file_ids:
            self._twice += 1
            return
        self._file_ids.add(key)
        self.files.append(path)

    def _follow(self, link: str, links) -> None:
        try:
            st = os.stat(link)
        except OSError:
            self.files.append(link)  # broken, a loop of links, or unreadable: the file check names it
            return
        if not stat.S_ISDIR(st.st_mode):
            self._add_file(link, st)
            return
        key = (st.st_dev, st.st_ino)
        real = os.path.realpath(link)
        here = os.path.realpath(os.path.dirname(link))
        if here == real or here.startswith(real.rstrip(os.sep) + os.sep):
            self.notes.append(f"{link} links back to {real}, a folder that contains it (a loop): not followed")
        elif key in self._dirs:
            self.notes.append(f"{link} is the folder {self._dirs[key]} again (a second link to it): "
                              "its images are counted once")
        else:
            self._walk(link, key, links)


def list_files(folder: str, notes: typing.Optional[list] = None) -> typing.List[str]:
    """All visible files below `folder` (see `Walk`); what was odd on the way is added to `notes`."""
    walk = Walk(folder)
    if notes is not None:
        notes.extend(walk.notes)
    return walk.files


def list_images(inputs: typing.Sequence[str], notes: typing.Optional[list] = None) -> typing.List[str]:
    """Expands files and folders (walked recursively, see `Walk`) into a list of files."""
    out = []
    for item in inputs:
        if os.path.isdir(item):
            out += list_files(item, notes)
        elif os.path.lexists(item):
            out.append(item)  # a file, or a broken link: the file check says which
        else:
            from tfl.errors import UsageError

            raise UsageError(f"{item}: no such file or folder")
    return out
