"""What an untrusted .onnx may contain before onnxruntime sees it.

onnxruntime's memory cap (see `runtime`) bounds the tensors a session allocates, but not
everything: the characters of string tensors live outside its arena (a 1 kB graph doubling a
string with StringConcat reached 1.2 GB under a 64 MB cap), and external data makes the session
read other files. An exported image classifier needs neither, nor any operator outside the
standard ONNX domain, so a graph is refused, with the first reason, when it has
- an operator of another domain (custom ops, ai.onnx.ml, com.microsoft) or model-local functions
  (whose bodies could hold anything),
- a string tensor anywhere (an initializer, a constant, a declared value, a Cast to string),
- a tensor stored outside the file (external data).
Subgraphs (If, Loop, Scan) are checked like the main graph.

The file is read with a small reader of protobuf's wire format rather than the `onnx` package:
importing `onnx` takes about a second and 80 MB, more than `edgetrain predict` itself. Only the
fields below are decoded; tensor contents are skipped by length, never copied.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from edgetrain.errors import EdgeTrainError

# Field numbers of onnx.proto (the tests pin them to the `onnx` package's descriptors).
MODEL_GRAPH, MODEL_FUNCTIONS = 7, 25
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE_INITIALIZER = 1, 5, 15
GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_VALUE_INFO = 11, 12, 13
NODE_OP_TYPE, NODE_DOMAIN, NODE_ATTRIBUTE = 4, 7, 5
ATTR_NAME, ATTR_I, ATTR_T, ATTR_G, ATTR_TENSORS, ATTR_GRAPHS = 1, 3, 5, 6, 10, 11
ATTR_SPARSE_TENSOR, ATTR_SPARSE_TENSORS = 22, 23
TENSOR_DATA_TYPE, TENSOR_NAME, TENSOR_DATA_LOCATION = 2, 8, 14
SPARSE_VALUES, SPARSE_INDICES = 1, 2
VALUE_NAME, VALUE_TYPE, TYPE_TENSOR, TENSOR_ELEM_TYPE = 1, 2, 1, 1
STRING, EXTERNAL = 8, 1  # TensorProto.DataType.STRING, TensorProto.DataLocation.EXTERNAL

STANDARD_DOMAINS = ("", "ai.onnx")
MAX_DEPTH = 32  # subgraphs within subgraphs; an exported classifier has none
MAX_FIELDS = 5_000_000  # an 80 MB export has a few thousand; each costs Python time

Fields = dict[int, list[int | memoryview]]


class _Malformed(Exception):
    """The bytes are not a well-formed ONNX protobuf (turned into one line by `check_graph`)."""


def check_graph(data: bytes, where: str) -> None:
    """Refuse, with one line, a model `edgetrain predict` will not run (see the module doc)."""
    budget = [MAX_FIELDS]
    try:
        model = _message(memoryview(data), budget)
        graph = _one(model, MODEL_GRAPH)
        if graph is None:
            raise _Malformed("no graph")
        if model[MODEL_FUNCTIONS]:
            problem: str | None = "model-local functions"
        else:
            problem = next(_problems(_bytes(graph), budget, 0), None)
    except _Malformed as exc:
        raise EdgeTrainError(f"{where}: not an ONNX model ({exc})") from None
    if problem:
        raise EdgeTrainError(f"{where}: refused: {problem}; edgetrain's exports never need it")


def _problems(graph: memoryview, budget: list[int], depth: int) -> Iterator[str]:
    """Every reason to refuse one GraphProto, its subgraphs included."""
    if depth > MAX_DEPTH:
        yield f"subgraphs nested more than {MAX_DEPTH} deep"
        return
    g = _message(graph, budget)
    for value in (*g[GRAPH_INPUT], *g[GRAPH_OUTPUT], *g[GRAPH_VALUE_INFO]):
        yield from _value_problems(_message(_bytes(value), budget), budget)
    tensors = list(g[GRAPH_INITIALIZER])
    tensors += [t for s in g[GRAPH_SPARSE_INITIALIZER] for t in _sparse_parts(s, budget)]
    for node_bytes in g[GRAPH_NODE]:
        node = _message(_bytes(node_bytes), budget)
        op, domain = _text(node, NODE_OP_TYPE), _text(node, NODE_DOMAIN)
        if domain not in STANDARD_DOMAINS:
            yield f"operator {domain}.{op} is not a standard ONNX operator"
        for attr_bytes in node[NODE_ATTRIBUTE]:
            attr = _message(_bytes(attr_bytes), budget)
            name = _text(attr, ATTR_NAME)
            if name in ("value_string", "value_strings") or (
                op == "Cast" and name == "to" and _one(attr, ATTR_I) == STRING
            ):
                yield f"{op} makes a string tensor"
            tensors += [*attr[ATTR_T], *attr[ATTR_TENSORS]]
            for s in (*attr[ATTR_SPARSE_TENSOR], *attr[ATTR_SPARSE_TENSORS]):
                tensors += _sparse_parts(s, budget)
            for sub in (*attr[ATTR_G], *attr[ATTR_GRAPHS]):
                yield from _problems(_bytes(sub), budget, depth + 1)
    for t in tensors:
        yield from _tensor_problems(_message(_bytes(t), budget))


def _tensor_problems(t: Fields) -> Iterator[str]:
    name = _text(t, TENSOR_NAME) or "unnamed"
    if _one(t, TENSOR_DATA_TYPE) == STRING:
        yield f"a string tensor ({name})"
    if _one(t, TENSOR_DATA_LOCATION) == EXTERNAL:
        yield f"tensor {name} is stored outside the file (external data)"


def _value_problems(v: Fields, budget: list[int]) -> Iterator[str]:
    """A declared graph value (ValueInfoProto) of string type."""
    type_bytes = _one(v, VALUE_TYPE)
    if type_bytes is None:
        return
    tensor_type = _one(_message(_bytes(type_bytes), budget), TYPE_TENSOR)
    tensor = _message(_bytes(tensor_type), budget) if tensor_type is not None else {}
    if _one(tensor, TENSOR_ELEM_TYPE) == STRING:
        yield f"a string value ({_text(v, VALUE_NAME)})"


def _sparse_parts(sparse: int | memoryview, budget: list[int]) -> list[int | memoryview]:
    s = _message(_bytes(sparse), budget)
    return [*s[SPARSE_VALUES], *s[SPARSE_INDICES]]


# ---- protobuf wire format: varints and length-delimited fields, nothing else needed here


def _message(buf: memoryview, budget: list[int]) -> Fields:
    """The fields of one message: number -> values (ints for varints, memoryviews for
    length-delimited fields; fixed-width fields are skipped)."""
    fields: Fields = defaultdict(list)
    pos, end = 0, len(buf)
    while pos < end:
        budget[0] -= 1
        if budget[0] < 0:
            raise _Malformed(f"more than {MAX_FIELDS} protobuf fields")
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            fields[number].append(value)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise _Malformed("a field runs past the end of the file")
            fields[number].append(buf[pos : pos + size])
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise _Malformed(f"wire type {wire}")
    if pos != end:
        raise _Malformed("truncated")
    return fields


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 70:
        if pos >= len(buf):
            raise _Malformed("truncated")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise _Malformed("a varint longer than 10 bytes")


def _one(fields: Fields, number: int) -> int | memoryview | None:
    """A singular field: its last value, as protobuf reads it."""
    values = fields.get(number)
    return values[-1] if values else None


def _bytes(value: int | memoryview) -> memoryview:
    if not isinstance(value, memoryview):
        raise _Malformed("a message field holds a number")
    return value


def _text(fields: Fields, number: int) -> str:
    value = _one(fields, number)
    return bytes(_bytes(value)).decode("utf-8", "replace")[:200] if value is not None else ""
