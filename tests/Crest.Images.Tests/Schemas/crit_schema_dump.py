# Prints, as JSON, the message and enum layouts and the magic table that the installed crit (pycriu) was
# built with, so the schema tests can compare Crest's .proto files and image kinds with CRIU's. Run with the system python3,
# which has the protobuf module pycriu needs.
import glob
import importlib
import json
import os
import sys

IMAGES = '/usr/lib/python3/dist-packages/pycriu/images'
sys.path.insert(0, IMAGES)
import magic  # noqa: E402
import opts_pb2  # noqa: E402
from google.protobuf.descriptor import FieldDescriptor as FD  # noqa: E402

TYPES = {v: k[len('TYPE_'):].lower() for k, v in vars(FD).items() if k.startswith('TYPE_')}
LABELS = {FD.LABEL_OPTIONAL: 'optional', FD.LABEL_REQUIRED: 'required', FD.LABEL_REPEATED: 'repeated'}


def criu_options(field):
    options = field.GetOptions()
    if not options.HasExtension(opts_pb2.criu):
        return {}
    criu = options.Extensions[opts_pb2.criu]
    return {f.name: v for f, v in criu.ListFields()}


def describe_field(field):
    return {
        'name': field.name,
        'number': field.number,
        'type': TYPES[field.type],
        'label': LABELS[field.label],
        'type_name': (field.message_type or field.enum_type).full_name if field.type in (FD.TYPE_MESSAGE, FD.TYPE_ENUM) else None,
        'default': str(field.default_value) if field.has_default_value else None,
        'packed': bool(field.GetOptions().packed),
        'criu': criu_options(field),
    }


messages, enums = {}, {}


def walk_enum(enum):
    enums[enum.full_name] = {v.name: v.number for v in enum.values}


def walk_message(message):
    messages[message.full_name] = [describe_field(f) for f in message.fields]
    for nested in message.nested_types:
        walk_message(nested)
    for enum in message.enum_types:
        walk_enum(enum)


for path in sorted(glob.glob(os.path.join(IMAGES, '*_pb2.py'))):
    module = importlib.import_module(os.path.basename(path)[:-3])
    for message in module.DESCRIPTOR.message_types_by_name.values():
        walk_message(message)
    for enum in module.DESCRIPTOR.enum_types_by_name.values():
        walk_enum(enum)

json.dump({'messages': messages, 'enums': enums, 'magics': magic.by_name}, sys.stdout)
