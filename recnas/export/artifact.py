"""The export folder of one architecture: write it (:func:`export_model`), verify and load it
(:func:`load_export`).

Layout (every file but the manifest is checksummed in the manifest)::

    EXPORT_DIR/
        manifest.json      self-describing: format, versions, created, model (kind, key, params,
                           FLOPs), signature of model.pt2, meta (source run, score, training), and
                           {file: {sha256, bytes}} of every other file
        spec.json          the ArchSpec (``dlrm.json`` for the DLRM baseline)
        feature_map.json   the prepared dataset's feature map (input columns, vocabulary sizes)
        weights.pt         the model's state dict; ``torch.load(..., weights_only=True)``
        model.pt2          ``torch.export`` program: ``(dense (B, n_dense) f32, ids (B, n_sparse) i64)
                           -> ctr (B,) f32``; loads with plain torch (see ``recnas/export/README.md``)

Example::

    >>> path = export_model(model, spec, fm, Path("exports/best"), meta={"score": 1.0})  # doctest: +SKIP
    >>> ex = load_export(path)                                                          # doctest: +SKIP
    >>> ex.predict(dense, ids).shape                                                    # doctest: +SKIP
    torch.Size([B])
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from recnas.data.batch import make_batch
from recnas.data.feature_map import FeatureMap
from recnas.export.architecture import (
    Architecture,
    DLRMConfig,
    architecture_file,
    build_model,
    describe_model,
)
from recnas.export.inference import InferenceModel, export_program, signature
from recnas.models import CTRModel
from recnas.space.spec import ArchSpec

__all__ = [
    "ExportError",
    "ExportedModel",
    "export_model",
    "export_architecture",
    "load_export",
    "verify_export",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "WEIGHTS",
    "PROGRAM",
    "FEATURE_MAP",
]

FORMAT = "recnas-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
PROGRAM = "model.pt2"
FEATURE_MAP = "feature_map.json"


class ExportError(ValueError):
    """An export folder that is incomplete, modified, truncated or inconsistent (the message names the file)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import torchrec

    import recnas

    return {
        "recnas": recnas.__version__,
        "torch": torch.__version__,
        "torchrec": torchrec.__version__,
        "python": platform.python_version(),
    }


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


# -- writing --------------------------------------------------------------------------------------
def export_model(model: CTRModel, spec: ArchSpec, feature_map: FeatureMap, out_dir: Path, meta: dict) -> Path:
    """Writes the export folder of an unsharded :class:`CTRModel` to ``out_dir`` (atomically).

    Args:
        model: the model with the weights to export (any device; copied to CPU).
        spec: its architecture (must be ``model.spec``).
        feature_map: the dataset's feature map (must be ``model.feature_map``).
        out_dir: the folder to write; an existing export there is replaced, any other existing
            non-empty folder is an error.
        meta: JSON-able description stored in the manifest (source run, score, training history).

    Returns:
        ``out_dir``.
    """
    if model.spec.key() != spec.key():
        raise ValueError(f"export_model: the model is architecture {model.spec.key()}, the spec {spec.key()}")
    return export_architecture(model, spec, feature_map, out_dir, meta)


def export_architecture(
    model: nn.Module, arch: Architecture, feature_map: FeatureMap, out_dir: Path, meta: dict
) -> Path:
    """:func:`export_model` for any :data:`Architecture` (a ``CTRModel`` or a ``DLRMBaseline``)."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise ValueError(f"export: {out} exists and is not an export folder (no {MANIFEST}); choose another --out")
    if getattr(model, "feature_map", feature_map) != feature_map:
        raise ValueError("export: the model was built for a different feature map")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    cpu_model = build_model(arch, feature_map, torch.device("cpu"))
    cpu_model.load_state_dict(state, strict=True)
    cpu_model.eval()
    if isinstance(arch, ArchSpec):
        inference = InferenceModel.from_ctr_model(cpu_model)
    else:
        inference = InferenceModel.from_dlrm(cpu_model, feature_map)

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        arch_name = architecture_file(arch)
        (tmp / arch_name).write_text(_json(arch.to_dict()))
        (tmp / FEATURE_MAP).write_text(feature_map.to_json() + "\n")
        program = export_program(inference)
        for name, save in ((WEIGHTS, lambda f: torch.save(state, f)), (PROGRAM, lambda f: torch.export.save(program, f))):
            try:
                save(tmp / name)
            except RuntimeError as e:  # torch's zip writer reports a failed write (ENOSPC, EFBIG) so
                if "inline_container" not in str(e) and "PytorchStreamWriter" not in str(e):
                    raise
                raise OSError(
                    errno.ENOSPC,
                    f"cannot write the export (no space left on device, or a file-size limit): {str(e).splitlines()[0]}",
                    str(tmp / name),
                ) from None
        files = {
            p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(tmp.iterdir())
        }
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": _versions(),
            "model": {**describe_model(arch, feature_map, cpu_model), "architecture_file": arch_name},
            "weights": WEIGHTS,
            "program": PROGRAM,
            "signature": signature(feature_map),
            "meta": meta,
            "files": files,
        }
        (tmp / MANIFEST).write_text(_json(manifest))
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


# -- reading --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportedModel:
    """A verified export folder, loaded.

    Attributes:
        path: the folder.
        manifest: ``manifest.json``.
        feature_map: the input features.
        architecture: the :class:`ArchSpec` (or :class:`DLRMConfig` for the DLRM baseline).
        model: the unsharded model on CPU with the exported weights, in eval mode
            (``CTRModel`` or ``DLRMBaseline``): ``forward(dense, kjt) -> logits (B,)``.
    """

    path: Path
    manifest: dict[str, Any]
    feature_map: FeatureMap
    architecture: Architecture
    model: nn.Module

    @property
    def spec(self) -> ArchSpec | None:
        """The architecture spec (``None`` for the DLRM baseline)."""
        return self.architecture if isinstance(self.architecture, ArchSpec) else None

    @property
    def key(self) -> str:
        return self.manifest["model"]["key"]

    @property
    def meta(self) -> dict[str, Any]:
        return self.manifest.get("meta", {})

    @torch.no_grad()
    def predict(self, dense: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(B,)`` of the recnas model for ``dense (B, n_dense)`` and ``ids (B, n_sparse)``."""
        batch = make_batch(dense, ids, torch.zeros(len(ids)), self.feature_map.sparse_names)
        self.model.eval()
        return torch.sigmoid(self.model(batch.dense_features, batch.sparse_features))

    def program(self) -> nn.Module:
        """The ``model.pt2`` artefact, loaded (a callable ``(dense, ids) -> ctr``)."""
        return torch.export.load(str(self.path / PROGRAM)).module()


def verify_export(path: str | os.PathLike) -> dict[str, Any]:
    """Checks an export folder against its manifest; returns the manifest.

    Raises:
        FileNotFoundError: the folder, ``manifest.json`` or a listed file is missing (named).
        ExportError: an unreadable manifest, an unknown format, or a file whose size (truncated)
            or sha256 (modified) differs from the manifest (named).
    """
    d = Path(path)
    if not d.is_dir():
        raise FileNotFoundError(f"export folder not found: {d}")
    mpath = d / MANIFEST
    if not mpath.exists():
        raise FileNotFoundError(f"{d} is not a recnas export: {MANIFEST} is missing")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{mpath}: not valid JSON ({e}); the manifest is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ExportError(f"{mpath}: not a recnas export manifest (format {found!r}, expected {FORMAT!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ExportError(
            f"{mpath}: export format version {manifest.get('format_version')!r}; this recnas reads version {FORMAT_VERSION}"
        )
    files = manifest.get("files")
    required = {manifest.get("weights"), manifest.get("program"), FEATURE_MAP, manifest.get("model", {}).get("architecture_file")}
    if not isinstance(files, dict) or not required <= set(files):
        raise ExportError(f"{mpath}: the manifest does not list every file of the export (needs {sorted(map(str, required))})")
    for name, entry in sorted(files.items()):
        p = d / name
        if Path(name).name != name:
            raise ExportError(f"{mpath}: bad file name {name!r}")
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing from the export (listed in {MANIFEST})")
        size = p.stat().st_size
        if size != entry["bytes"]:
            what = "truncated or modified" if size < entry["bytes"] else "modified"
            raise ExportError(f"{p}: {size} bytes, the manifest says {entry['bytes']}: the file is {what}")
        digest = sha256_file(p)
        if digest != entry["sha256"]:
            raise ExportError(f"{p}: modified: its sha256 {digest[:16]}... differs from the manifest's {entry['sha256'][:16]}...")
    return manifest


def load_export(path: Path) -> ExportedModel:
    """Verifies an export folder (:func:`verify_export`) and loads its model on CPU.

    The weights are read with ``torch.load(..., weights_only=True)``; every error names the file.
    """
    d = Path(path)
    manifest = verify_export(d)
    arch_name = manifest["model"]["architecture_file"]
    fm_path, arch_path, w_path = d / FEATURE_MAP, d / arch_name, d / manifest["weights"]
    try:
        fm = FeatureMap.from_json(fm_path.read_text(), source=str(fm_path))
    except (ValueError, json.JSONDecodeError) as e:
        raise ExportError(f"{fm_path}: {e}") from None
    try:
        raw = json.loads(arch_path.read_text())
        arch: Architecture = ArchSpec.from_dict(raw) if arch_name == "spec.json" else DLRMConfig.from_dict(raw, str(arch_path))
        model = build_model(arch, fm, torch.device("cpu"))
    except (ValueError, json.JSONDecodeError) as e:
        raise ExportError(f"{arch_path}: {e}") from None
    try:
        state = torch.load(w_path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any unpickling failure is a damaged file
        raise ExportError(f"{w_path}: cannot be read as a weights-only state dict: {e}") from None
    if not isinstance(state, dict):
        raise ExportError(f"{w_path}: expected a state dict, found {type(state).__name__}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ExportError(f"{w_path}: does not match the architecture in {arch_name}: {e}") from None
    model.eval()
    return ExportedModel(d, manifest, fm, arch, model)
