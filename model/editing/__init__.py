"""Training-free text-driven video editing (FlowDirector, arXiv 2506.05046, on FlowEdit, arXiv 2412.08629).

``vidforge edit`` (:mod:`model.editing.cli`) -> :class:`FlowDirectorEditor` (:mod:`.editor`): encode the
source video, run the inversion-free editing flow (:mod:`.flowedit`) on the model's flow velocity
(:mod:`.velocity`, v-prediction converted), masked by word attention (:mod:`.masks`), combined over
noise draws by differential averaging guidance (:mod:`.dag`), per latent-frame window (:mod:`.windows`).
"""

from model.editing.config import EditConfig, load_edit_config
from model.editing.editor import EditResult, FlowDirectorEditor
from model.editing.flowedit import edit_sigmas, flow_edit

__all__ = ["EditConfig", "EditResult", "FlowDirectorEditor", "edit_sigmas", "flow_edit", "load_edit_config"]
