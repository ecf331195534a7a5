"""Training: the state pytree, the pure sharded step, checkpoints, metric writers and the host loop."""

from .checkpoint import CheckpointError as CheckpointError
from .checkpoint import Checkpoints as Checkpoints
from .loop import NonFiniteError as NonFiniteError
from .loop import restore_state as restore_state
from .loop import train as train
from .loop import train_and_evaluate as train_and_evaluate
from .state import TrainState as TrainState
