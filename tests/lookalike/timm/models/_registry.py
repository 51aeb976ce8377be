_ENTRYPOINTS = {}


def register_model(fn):
    _ENTRYPOINTS[fn.__name__] = fn
    return fn


def is_model(name):
    return name in _ENTRYPOINTS


def list_models():
    return sorted(_ENTRYPOINTS)


def model_entrypoint(name):
    return _ENTRYPOINTS[name]
