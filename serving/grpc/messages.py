"""Protobuf messages (serving/proto/storefront.proto) <-> the capabilities' pydantic bodies, by field name.

One generic converter for every RPC, so a new capability needs no conversion code, only messages whose
field names are its pydantic fields'. Requests become the same dicts a JSON body would be and go
through the same pydantic models, so both APIs share one set of limits and error messages:
- an `Id` is the shop's int or string id; an empty `Id` is "no id" (the model names the field);
- an unset optional field, message or `IdList` is left out (the model's default applies);
- an empty repeated field is left out when the model has a default for it, else sent as [];
- NaN in a repeated double is an unknown value (null), e.g. a day of a sales series.
Answers: None leaves the field unset, dates become ISO strings, maps and lists are copied.
"""

from __future__ import annotations

import datetime as dt
import math
import typing
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from pydantic import BaseModel

from serving.proto import ensure_stubs

ensure_stubs()  # a fresh checkout or install has no stubs yet

from serving.proto import storefront_pb2 as pb  # noqa: E402  (generated just above when missing)

ShopId = int | str
_DOUBLE = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


def message_class(descriptor: Any) -> type[Message]:
    return getattr(pb, descriptor.name)


# ---- requests: proto -> pydantic (raises pydantic.ValidationError naming the field)


def _id(msg: pb.Id) -> ShopId | None:
    kind = msg.WhichOneof("value")
    return None if kind is None else getattr(msg, kind)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `SalesHistory | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for a in typing.get_args(annotation) if (m := _nested_model(a)) is not None), None)


def _value(value: Any, field: FieldDescriptor, model: type[BaseModel] | None) -> Any:
    if field.message_type is None:
        return value
    if field.message_type.name == "Id":
        return _id(value)
    if field.message_type.name == "IdList":
        return [_id(v) for v in value.ids]
    return request_dict(value, model)


def request_dict(msg: Message, model: type[BaseModel] | None) -> dict[str, Any]:
    fields = model.model_fields if model is not None else {}
    body: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        info = fields.get(field.name)
        nested = _nested_model(info.annotation) if info is not None else None
        value = getattr(msg, field.name)
        if field.is_repeated:
            if not value and (info is None or not info.is_required()):
                continue
            items = [_value(v, field, nested) for v in value]
            body[field.name] = [None if isinstance(v, float) and math.isnan(v) else v for v in items]
        elif field.has_presence:
            if msg.HasField(field.name):
                body[field.name] = _value(value, field, nested)
        else:
            body[field.name] = value
    return body


def to_request(msg: Message, model: type[BaseModel]) -> BaseModel:
    return model.model_validate(request_dict(msg, model))


# ---- answers: pydantic -> proto


def _id_msg(value: ShopId) -> pb.Id:
    return pb.Id(string_value=value) if isinstance(value, str) else pb.Id(int_value=value)


def _field_value(value: Any, field: FieldDescriptor) -> Any:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return dict(value)
    if field.message_type is not None:
        cls = message_class(field.message_type)
        one = (lambda v: _id_msg(v)) if cls is pb.Id else (lambda v: to_message(v, cls))
        return [one(v) for v in value] if field.is_repeated else one(value)
    if field.is_repeated:
        return [float("nan") if v is None and field.type in _DOUBLE else v for v in value]
    return value.isoformat() if isinstance(value, dt.date) else value


def to_message(value: BaseModel, cls: type[Message]) -> Message:
    kwargs = {}
    for field in cls.DESCRIPTOR.fields:
        v = getattr(value, field.name, None)
        if v is not None:
            kwargs[field.name] = _field_value(v, field)
    return cls(**kwargs)


# ---- for clients and tests


def as_dict(msg: Message) -> Any:
    """A message as the HTTP API's JSON would have it: ids as plain int/str, unset optional fields as None."""
    if isinstance(msg, pb.Id):
        return _id(msg)
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[field.name] = dict(value)  # this API's maps hold scalars only
        elif field.is_repeated:
            out[field.name] = [as_dict(v) if isinstance(v, Message) else v for v in value]
        elif field.has_presence and not msg.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = as_dict(value) if isinstance(value, Message) else value
    return out
