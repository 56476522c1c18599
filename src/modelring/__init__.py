"""modelring: Recurrent Parameter Generators (arXiv 2107.07110) for any PyTorch model."""
from .adapters import adapt, is_adapted, merge, set_adapter, unmerge
from .bank import is_converted
from .convert import convert, materialize
from .plan import DEFAULT_TYPES, plan_rings, rings_by_prefix, rings_per_stage
from .count import count_params
from .diagnose import wiring_report
from .loop import fit
from .io import load, load_adapter, save
from .quantize import prune_rings, quantize_rings
from .models import create_model, list_models, register_model
from .wiring import WIRING_VERSION

__version__ = "0.1.0"
__all__ = ["DEFAULT_TYPES", "WIRING_VERSION", "adapt", "convert", "count_params", "create_model", "fit",
           "is_adapted", "is_converted", "list_models", "load", "load_adapter", "materialize", "merge", "plan_rings",
           "prune_rings", "quantize_rings", "register_model", "rings_by_prefix", "rings_per_stage", "save",
           "set_adapter", "unmerge", "wiring_report"]
