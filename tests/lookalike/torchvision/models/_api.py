import enum

BUILTIN_MODELS = {}


def register_model(name=None):
    def wrapper(fn):
        BUILTIN_MODELS[name or fn.__name__] = fn
        return fn

    return wrapper


def get_model_builder(name):
    return BUILTIN_MODELS[name.lower()]


def get_model(name, **config):
    return get_model_builder(name)(**config)


def list_models():
    return sorted(BUILTIN_MODELS)


class WeightsEnum(enum.Enum):
    @classmethod
    def verify(cls, obj):
        if obj is not None and not isinstance(obj, cls):
            obj = cls[obj.replace(cls.__name__ + ".", "")] if isinstance(obj, str) else None
        return obj

    @property
    def meta(self):
        return self.value["meta"]

    def get_state_dict(self, progress=True, check_hash=True):
        return self.value["state_dict"]()
