"""The real ``basicsr`` CLI plus an observer, for the torchrun test (``python -m tests.ddp_probe train ...``).

The observer model is ``ImageCleanModel`` unchanged except that it records, per rank, which images each training
iteration used, how often it validated, which files it saved (through the real atomic writer) and a checksum of the
final weights; each rank dumps that to ``$DDP_PROBE_DIR/rank<r>.json`` at exit. Every completed iteration is also
appended at once to ``rank<r>.jsonl`` (``{"iter", "paths", "lr"}``, surviving a SIGKILL), and each process writes its
pid to ``rank<r>.pid`` when it starts (for the kill tests).
"""
import atexit
import hashlib
import json
import os
import signal
import sys

# isort: off
import restormer_arch  # noqa: F401  (compat fixes before basicsr is imported)
from basicsr.utils.registry import MODEL_REGISTRY
# isort: on
from restormer_arch import checkpoint
from restormer_arch.cli import main
from restormer_arch.models import ImageCleanModel

RECORD = {'batches': [], 'validations': 0, 'saved': []}
_real_atomic_save = checkpoint.atomic_save


def _recording_atomic_save(obj, path):
    RECORD['saved'].append(os.path.basename(path))
    _real_atomic_save(obj, path)


checkpoint.atomic_save = _recording_atomic_save  # what the checkpoint methods call


@MODEL_REGISTRY.register()
class ProbeImageCleanModel(ImageCleanModel):
    """ImageCleanModel that records what this rank trained on."""

    def feed_data(self, data):
        super().feed_data(data)
        self._paths = [os.path.basename(p) for p in data.get('lq_path', [])]

    def optimize_parameters(self, current_iter):
        RECORD['batches'].append(self._paths)
        super().optimize_parameters(current_iter)
        _PROBE['model'] = self
        line = {'iter': current_iter, 'paths': self._paths, 'lr': self.get_current_learning_rate()[0]}
        with open(_out('jsonl'), 'a', encoding='utf-8') as f:
            f.write(json.dumps(line) + '\n')
        # DDP_PROBE_DIE_AT=<iter>[:<rank>]: SIGKILL this process right after that iteration (first attempt only), at a
        # point that a kill from outside, racing the run, cannot hit reliably.
        at, _, rank = os.environ.get('DDP_PROBE_DIE_AT', '').partition(':')
        if at and int(at) == current_iter and rank in ('', os.environ.get('RANK', '0')) \
                and os.environ.get('TORCHELASTIC_RESTART_COUNT', '0') == '0':
            if os.environ.get('DDP_PROBE_DIE_WITH_AGENT'):  # torchrun's agent (the parent) too: a node lost
                os.kill(os.getppid(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

    def nondist_validation(self, *args, **kwargs):
        RECORD['validations'] += 1
        super().nondist_validation(*args, **kwargs)


_PROBE = {}


def _out(ext):
    return os.path.join(os.environ['DDP_PROBE_DIR'], f'rank{os.environ.get("RANK", "0")}.{ext}')


def _dump():
    model = _PROBE.get('model')
    if model is not None:
        digest = hashlib.sha256()
        for tensor in model.get_bare_model(model.net_g).state_dict().values():
            digest.update(tensor.detach().cpu().numpy().tobytes())
        RECORD['weights_sha256'] = digest.hexdigest()
    with open(_out('json'), 'w', encoding='utf-8') as f:
        json.dump(RECORD, f)


atexit.register(_dump)

if __name__ == '__main__':
    with open(_out('pid'), 'w', encoding='utf-8') as f:
        f.write(str(os.getpid()))
    sys.exit(main())
