"""Which file a record's picture is, for the console's picture routes: only a kept .jpg inside the lanes' images
folder (the path stored in the record is never trusted as it is)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def picture_file(images_root: Optional[Path], stored: Optional[str]) -> Optional[Path]:
    """The picture a record points at, if it is a kept .jpg under the images folder; else None."""
    if images_root is None or not stored:
        return None
    try:
        path = Path(stored).resolve()
        path.relative_to(Path(images_root).resolve())
    except (ValueError, OSError):
        return None
    return path if path.suffix == ".jpg" and path.is_file() else None
