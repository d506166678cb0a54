"""The benchmark matrix of ``edgevos bench``: families (with presets), per-family weights, and
the family x backend x precision x tau rows, checked against the backend registry's precisions."""
from __future__ import annotations

from typing import Dict

from edgevos.backend import BACKENDS
from edgevos.errors import InputError
from edgevos.parsing import split_list

#: what each backend accepts on the precision axis (the backend registry's vocabulary)
BACKEND_PRECISIONS = {name: entry.precisions for name, entry in BACKENDS.items()}


def parse_families(text: str):
    """'gfrtm,slowfast:3-7' -> [('gfrtm', None), ('slowfast', '3-7')], each preset checked by its
    family (:meth:`edgevos.models.registry.Family.check_preset`)."""
    from edgevos.models.registry import get_family

    out = []
    for item in split_list(text):
        name, _, preset = item.partition(":")
        fam = get_family(name)
        if preset:
            try:
                fam.check_preset(preset)
            except InputError as exc:
                raise InputError(f"--family {item}: {exc}") from None
        out.append((name, preset or None))
    if not out:
        raise InputError("--family is empty: name at least one family, e.g. gfrtm")
    return out


def parse_weights(text: str, families) -> Dict[str, str]:
    """'default' / a path for every family, or 'gfrtm=a.pt,slowfast=b.pt'."""
    if "=" not in text:
        return {f: text for f, _ in families}
    out = {}
    for item in split_list(text):
        fam, eq, w = item.partition("=")
        if not eq or not w:
            raise InputError(f"--weights item '{item}' is not FAMILY=PATH")
        out[fam.strip()] = w.strip()
    missing = sorted({f for f, _ in families} - set(out))
    if missing:
        raise InputError(f"--weights gives no checkpoint for {missing}: add {missing[0]}=PATH (or 'default')")
    return out


def matrix(families, backends, precisions, taus):
    """The rows to run and the combinations skipped (precision not meaningful for a backend)."""
    rows, skipped = [], []
    for b in backends:
        if b not in BACKEND_PRECISIONS:
            raise InputError(f"--backend '{b}' is unknown: choose from {list(BACKEND_PRECISIONS)}")
    known = {p for ps in BACKEND_PRECISIONS.values() for p in ps}
    for p in precisions:
        if p not in known:
            raise InputError(f"--precision '{p}' is unknown: choose from {sorted(known)}")
    for fam, preset in families:
        for b in backends:
            for p in precisions:
                if p not in BACKEND_PRECISIONS[b]:
                    skipped.append(f"{b} x {p}")
                    continue
                for t in taus:
                    rows.append({"family": fam, "preset": preset, "backend": b, "precision": p, "tau": t})
    return rows, sorted(set(skipped))
