"""The paper-reported numbers shipped in ``modzoo/data/reported/<family>.json`` (each file cites its source)."""
import json
import os
from typing import Any, Dict, Optional

__all__ = ['REPORTED_DIR', 'load_reported_files', 'load_reported']

REPORTED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data', 'reported')


def load_reported_files(folder: str = REPORTED_DIR) -> Dict[str, Dict[str, Any]]:
    """``{family: file content}`` for every ``<family>.json`` in ``folder``, in name order."""
    out = {}
    for fname in sorted(os.listdir(folder)):
        if fname.endswith('.json'):
            with open(os.path.join(folder, fname)) as f:
                data = json.load(f)
            out[data.get('family', fname[:-len('.json')])] = data
    return out


def load_reported(family: Optional[str] = None, folder: str = REPORTED_DIR) -> Dict[str, Dict[str, Any]]:
    """``{model name (or model.tag): reported numbers}``, each entry also carrying its file's ``family`` and
    ``source``; only ``family``'s models when given."""
    out = {}
    for fam, data in load_reported_files(folder).items():
        if family is not None and fam != family:
            continue
        for name, entry in data.get('models', {}).items():
            out[name] = dict(entry, family=fam, source=data.get('source', ''))
    return out
