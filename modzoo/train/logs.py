"""Run logs written by rank 0: a CSV file with one row per epoch, and TensorBoard events when installed."""
import csv
import logging
import os
from typing import Any, Dict, Sequence

from modzoo.utils.files import atomic_write

from .config import ConfigError

_logger = logging.getLogger(__name__)

__all__ = ['CsvLog', 'open_tensorboard']


class CsvLog:
    """Append-only CSV of epoch rows. On resume, rows of epochs that will be re-run are dropped first, so the file
    never holds the same epoch twice however often the run was interrupted."""

    def __init__(self, path: str, fields: Sequence[str]):
        self.path = path
        self.fields = list(fields)

    @staticmethod
    def epochs(path: str) -> list:
        """The epoch numbers of the rows in ``path`` (unreadable rows are left out)."""
        with open(path, newline='') as f:
            return [int(r['epoch']) for r in csv.DictReader(f) if str(r.get('epoch') or '').isdigit()]

    def truncate(self, keep_below_epoch: int) -> None:
        if not os.path.isfile(self.path):
            return
        with open(self.path, newline='') as f:
            rows = [r for r in csv.DictReader(f) if int(r['epoch']) < keep_below_epoch]
        with atomic_write(self.path, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction='ignore')
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: Dict[str, Any]) -> None:
        new = not os.path.isfile(self.path)
        with open(self.path, 'a', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction='ignore')
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(v: Any) -> Any:
    return f'{v:.6g}' if isinstance(v, float) else v


def open_tensorboard(output: str, mode: str = 'auto'):
    """A ``SummaryWriter`` in ``<output>/tensorboard``; None when off, or when tensorboard is missing in 'auto'."""
    if mode == 'off':
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        if mode == 'on':
            raise ConfigError('--tensorboard on needs the tensorboard package: pip install tensorboard') from e
        _logger.debug('tensorboard not installed; logging to CSV only')
        return None
    return SummaryWriter(log_dir=os.path.join(output, 'tensorboard'))
