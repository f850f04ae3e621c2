"""Listing a dataset's files once: a walk that follows symbolic links but never loops.

Every file-backed kind lists its folders and files through one `Walk` per resolve. It follows
links (datasets are often assembled from links) and knows folders and files by what they are on
disk, (st_dev, st_ino), not by their path:

- a folder reached again (a link back to itself or to a parent, a second link to one folder, a
  link to another class folder) is not walked again: `ln -s . a/selfdir` adds nothing;
- a file reached again (a link to a file already listed, a hard link) is listed once, under the
  path it was first reached by (folders in sorted order, in each folder the real files before
  the links);
- a link to a folder that holds the dataset (its root or a parent of it) is a loop, not followed.

Whatever it leaves out comes back as (path, reason) like every other skip, and `Walk.warning()`
sums the repeats up in one line for `Splits.warnings`. Other skips: hidden entries, files of
another type, broken links, things that are not regular files (a FIFO named x.jpg would block the
decoder), folders that cannot be read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from edgetrain.data.decode import is_image_name

Key = tuple[int, int]  # (st_dev, st_ino): what a folder or file is, whatever path reached it
Skips = list[tuple[str, str]]  # (path, reason)


def _key(st: os.stat_result) -> Key:
    return st.st_dev, st.st_ino


class Walk:
    """The folders and files of one dataset seen so far; `scan` lists a folder's new files.

    Create one per resolve and pass it to every scan of that dataset, so that a file linked from
    one class (or split) folder into another counts once. `root` is the dataset's folder: it and
    its parents are never walked through a link (that would be a loop).
    """

    def __init__(self, root: Path) -> None:
        self._dirs: dict[Key, Path] = {}  # folder -> the path it was first reached by
        self._files: dict[Key, Path] = {}  # file -> the path it was first listed under
        self._holders: set[Key] = set()  # the root and its parents: a link to one is a loop
        self.repeats: Skips = []  # folders and files left out because they were reached before
        for p in (root, *root.parents):
            try:
                self._holders.add(_key(p.stat()))
            except OSError:
                continue

    def claim_folder(self, folder: Path) -> str | None:
        """Take `folder` as part of the dataset; the reason it is not, if it was reached before.

        Used for the folders a layout names (class folders, split folders) before any is walked,
        so that a link from inside one class folder to another is not followed.
        """
        try:
            key = _key(folder.stat())
        except OSError as exc:
            return f"cannot read folder: {exc.strerror or exc}"
        reason = self._repeat_folder(folder, key)
        if reason is None:
            self._dirs[key] = folder
        elif (str(folder), reason) not in self.repeats:
            self.repeats.append((str(folder), reason))
        return reason

    def _repeat_folder(self, folder: Path, key: Key) -> str | None:
        if key in self._holders:
            return "symbolic link loop: leads back to a folder that holds the dataset; not followed"
        first = self._dirs.get(key)
        if first is None or first == folder:  # new, or claimed by this very path
            return None
        if first in folder.parents:
            return f"symbolic link loop: leads back to {first}; not followed"
        return f"same folder as {first} (a symbolic link); its files are counted there, once"

    def scan(
        self,
        folder: Path,
        *,
        keep: Callable[[Path], bool] = is_image_name,
        what: str = "an image",
    ) -> tuple[list[Path], Skips]:
        """Files under `folder` (recursive, sorted, top-down) that `keep` accepts, each file once,
        and (path, reason) for everything left out.

        `folder` itself is walked even if claimed before (by `claim_folder`); folders below it
        are walked only the first time they are reached.
        """
        try:
            self._dirs.setdefault(_key(folder.stat()), folder)
        except OSError as exc:
            return [], [(str(folder), f"cannot read folder: {exc.strerror or exc}")]
        found: list[Path] = []
        skipped: Skips = []
        stack = [folder]
        while stack:
            here = stack.pop()
            try:
                with os.scandir(here) as it:
                    # Links after the real entries: a file and a link to it keep the file.
                    entries = sorted(it, key=lambda e: (e.is_symlink(), e.name))
            except OSError as exc:
                skipped.append((str(here), f"cannot read folder: {exc.strerror or exc}"))
                continue
            subdirs: list[Path] = []
            for e in entries:
                p = here / e.name
                try:
                    is_dir = e.is_dir()  # follows links
                except OSError:
                    is_dir = False
                if is_dir:
                    if e.name.startswith("."):
                        skipped.append((str(p), "hidden folder"))
                    elif (reason := self.claim_folder(p)) is not None:
                        skipped.append((str(p), reason))
                    else:
                        subdirs.append(p)
                    continue
                if e.name.startswith("."):
                    skipped.append((str(p), "hidden file"))
                elif not keep(p):
                    skipped.append((str(p), f"not {what} file ({p.suffix or 'no extension'})"))
                elif (reason := self._claim_file(p)) is not None:
                    skipped.append((str(p), reason))
                else:
                    found.append(p)
            stack += reversed(subdirs)  # depth first, in sorted order, like os.walk
        # A loop's skip is already in `skipped` (claim_folder adds it to repeats for the warning).
        return found, skipped

    def _claim_file(self, path: Path) -> str | None:
        """None if `path` is a new regular file (now claimed), else why it is left out."""
        try:
            st = path.stat()
        except OSError as exc:
            if path.is_symlink():
                return "broken symbolic link"
            return f"cannot read: {exc.strerror or exc}"
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file (a device, FIFO or socket)"
        first = self._files.get(_key(st))
        if first is not None:
            reason = f"same file as {first} (a symbolic or hard link); counted once"
            self.repeats.append((str(path), reason))
            return reason
        self._files[_key(st)] = path
        return None

    def warning(self) -> list[str]:
        """One line for `Splits.warnings` if folders or files were reached twice, else none."""
        if not self.repeats:
            return []
        f, why = self.repeats[0]
        return [
            f"{len(self.repeats)} folder(s) or file(s) reached a second time through links were "
            f"not counted again (e.g. {f}: {why}); the skipped files list them all"
        ]


def count_files(folder: Path) -> int:
    """Files under `folder`, each once (links followed, loops not): for messages."""
    walk = Walk(folder)
    found, _ = walk.scan(folder, keep=lambda p: True)
    return len(found)


def scan_folder(folder: Path) -> tuple[list[Path], Skips]:
    """Image files under `folder` (recursive, sorted) and (path, reason) for everything else,
    walked on its own (`Walk(folder).scan(folder)`)."""
    return Walk(folder).scan(folder)
