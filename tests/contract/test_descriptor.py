"""The generated contract agrees with the published apex.v1 API.

This repeats `buf breaking --against reference/...` in Python on purpose, so
the check also runs where buf is not installed (the oldest-deps venv).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from apex_grpc_proto.apex.v1 import apex_pb2, apex_pb2_grpc

pytestmark = pytest.mark.oldest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "reference" / "apex_v1_reference.binpb"
SHARED_REFERENCE = ROOT.parent / "shared" / "reference" / "apex_v1_reference.binpb"
FieldProto = descriptor_pb2.FieldDescriptorProto


def _reference_file() -> descriptor_pb2.FileDescriptorProto:
    fds = descriptor_pb2.FileDescriptorSet.FromString(REFERENCE.read_bytes())
    (apex,) = [f for f in fds.file if f.package == "apex.v1"]
    return apex


def _our_file() -> descriptor_pb2.FileDescriptorProto:
    ours = descriptor_pb2.FileDescriptorProto()
    apex_pb2.DESCRIPTOR.CopyToProto(ours)
    # CopyToProto leaves json_name out; the runtime descriptor knows the one
    # the JSON mapping really uses.
    pool = apex_pb2.DESCRIPTOR.pool
    for full_name, message in _messages(ours).items():
        live = pool.FindMessageTypeByName(full_name.lstrip("."))
        for field in message.field:
            field.json_name = live.fields_by_name[field.name].json_name
    return ours


def _field_shape(field: FieldProto, message: descriptor_pb2.DescriptorProto) -> tuple[object, ...]:
    real_oneof = (
        message.oneof_decl[field.oneof_index].name
        if field.HasField("oneof_index") and not field.proto3_optional
        else None
    )
    return (
        field.number,
        FieldProto.Type.Name(field.type),
        FieldProto.Label.Name(field.label),
        field.type_name,
        field.json_name or None,
        field.proto3_optional,
        real_oneof,
        field.options.packed if field.options.HasField("packed") else None,
    )


def _messages(
    file: descriptor_pb2.FileDescriptorProto,
) -> dict[str, descriptor_pb2.DescriptorProto]:
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, messages: list[descriptor_pb2.DescriptorProto]) -> None:
        for message in messages:
            name = f"{prefix}.{message.name}"
            found[name] = message
            walk(name, list(message.nested_type))

    walk(f".{file.package}", list(file.message_type))
    return found


def test_reference_copy_matches_shared_reference() -> None:
    if not SHARED_REFERENCE.exists():
        pytest.skip(
            "the published apex.v1 reference descriptor is not available to compare "
            "reference/ with (it ships beside the project in CI, as ../shared/reference)"
        )
    assert REFERENCE.read_bytes() == SHARED_REFERENCE.read_bytes()


def test_package_and_dependencies_match() -> None:
    ref, ours = _reference_file(), _our_file()
    assert ours.package == ref.package == "apex.v1"
    assert ours.syntax == ref.syntax == "proto3"
    assert sorted(ours.dependency) == sorted(ref.dependency)
    assert ours.options.go_package == ref.options.go_package


def test_same_messages() -> None:
    assert sorted(_messages(_our_file())) == sorted(_messages(_reference_file()))


@pytest.mark.parametrize("name", sorted(_messages(_reference_file())))
def test_message_is_wire_identical(name: str) -> None:
    ref = _messages(_reference_file())[name]
    ours = _messages(_our_file())[name]
    ref_fields = {f.name: _field_shape(f, ref) for f in ref.field}
    our_fields = {f.name: _field_shape(f, ours) for f in ours.field}
    assert our_fields == ref_fields
    assert ours.options.map_entry == ref.options.map_entry
    assert [e.name for e in ours.enum_type] == [e.name for e in ref.enum_type]
    assert list(ours.reserved_range) == list(ref.reserved_range)


def test_enums_match() -> None:
    ref, ours = _reference_file(), _our_file()
    shape = lambda f: {e.name: [(v.name, v.number) for v in e.value] for e in f.enum_type}  # noqa: E731
    assert shape(ours) == shape(ref)


def test_service_matches_reference() -> None:
    (ref_service,) = _reference_file().service
    (our_service,) = _our_file().service
    assert our_service.name == ref_service.name == "ApexService"

    def methods(service: descriptor_pb2.ServiceDescriptorProto) -> dict[str, tuple[object, ...]]:
        return {
            m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
            for m in service.method
        }

    assert methods(our_service) == methods(ref_service)
    assert len(our_service.method) == 16


def test_every_reference_rpc_is_in_the_generated_stub() -> None:
    (ref_service,) = _reference_file().service
    stub_methods = set(vars(apex_pb2_grpc.ApexServiceStub(_NoChannel())))
    servicer_methods = {
        name for name in vars(apex_pb2_grpc.ApexServiceServicer) if not name.startswith("_")
    }
    for method in ref_service.method:
        assert method.name in stub_methods, f"stub lacks {method.name}"
        assert method.name in servicer_methods, f"servicer lacks {method.name}"
    assert len(stub_methods) == len(ref_service.method)


def test_rpc_paths_and_streaming_in_the_stub() -> None:
    channel = _NoChannel()
    apex_pb2_grpc.ApexServiceStub(channel)
    (ref_service,) = _reference_file().service
    expected = {
        f"/apex.v1.ApexService/{m.name}": ("unary_stream" if m.server_streaming else "unary_unary")
        for m in ref_service.method
    }
    assert channel.registered == expected


class _NoChannel:
    """Records what a generated stub asks a channel for, without any I/O."""

    def __init__(self) -> None:
        self.registered: dict[str, str] = {}

    def _record(self, kind: str, path: str) -> object:
        self.registered[path] = kind
        return object()

    def unary_unary(self, path: str, *args: object, **kwargs: object) -> object:
        return self._record("unary_unary", path)

    def unary_stream(self, path: str, *args: object, **kwargs: object) -> object:
        return self._record("unary_stream", path)

    def stream_unary(self, path: str, *args: object, **kwargs: object) -> object:
        return self._record("stream_unary", path)

    def stream_stream(self, path: str, *args: object, **kwargs: object) -> object:
        return self._record("stream_stream", path)
