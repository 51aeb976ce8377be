"""What the zoo scripts share (each script's folder is on its sys.path)."""

from tmodel.errors import TModelError
from tmodel.nn import registry


def layer_codes(names: tuple[str, ...]) -> dict[str, str]:
    """Per layer name, "registered" or the code looking it up raises (through the integrations' finders)."""
    codes = {}
    for name in names:
        try:
            registry.spec_for_name(name, name)
            codes[name] = "registered"
        except TModelError as exc:
            codes[name] = exc.code
    return codes
