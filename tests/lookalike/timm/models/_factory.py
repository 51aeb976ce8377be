from ._registry import is_model, model_entrypoint


def create_model(
    model_name,
    pretrained=False,
    pretrained_cfg=None,
    pretrained_cfg_overlay=None,
    checkpoint_path=None,
    cache_dir=None,
    scriptable=None,
    exportable=None,
    no_jit=None,
    **kwargs,
):
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # as timm does
    if ":" in model_name:
        raise RuntimeError("the look-alike has no hub")
    arch, _, tag = model_name.partition(".")
    if not is_model(arch):
        raise RuntimeError(f"Unknown model ({arch})")
    return model_entrypoint(arch)(pretrained=pretrained, tag=tag or None, **kwargs)
