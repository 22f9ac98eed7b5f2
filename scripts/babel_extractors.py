"""A Babel extraction method for idp's Python sources: the standard one, plus page texts that
are plain literals rather than arguments of a call (so `-k NAME` cannot reach them).

Wired in through babel.cfg ([extractors] section); no change to the application's sources. Two
options, both whitespace-separated lists of names:

    constants  module-level names whose value is a message, or a dict/list/tuple of messages
               (e.g. LOGIN_FAILED = "...", SCOPE_TEXTS = {"email": "..."})
    dict_keys  keys whose string value in any dict literal is a message
               (e.g. render(..., "logged_out.html", {"heading": "..."}))

Only string literals are taken; anything computed (f-strings, concatenation with variables) is
left out, as it would be by the standard extractor.
"""

from __future__ import annotations

import ast
from io import BytesIO

from babel.messages.extract import extract_python


def _names(options: dict, key: str) -> set[str]:
    return set((options.get(key) or "").replace(",", " ").split())


def _literal(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _constant_messages(tree: ast.Module, names: set[str]):
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            targets, value = statement.targets, statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets, value = [statement.target], statement.value
        else:
            continue
        name = next((t.id for t in targets if isinstance(t, ast.Name) and t.id in names), None)
        if name is None:
            continue
        if (text := _literal(value)) is not None:
            yield value.lineno, text, [name]
        elif isinstance(value, ast.Dict):
            for key, item in zip(value.keys, value.values):
                if (text := _literal(item)) is not None:
                    label = f"{name}[{key.value!r}]" if _literal(key) is not None else name
                    yield item.lineno, text, [label]
        elif isinstance(value, (ast.List, ast.Tuple, ast.Set)):
            for item in value.elts:
                if (text := _literal(item)) is not None:
                    yield item.lineno, text, [name]


def _dict_value_messages(tree: ast.Module, keys: set[str]):
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, item in zip(node.keys, node.values):
                if key is not None and _literal(key) in keys and (text := _literal(item)) is not None:
                    yield item.lineno, text, [f"{{{key.value!r}: ...}}"]


def extract_python_with_constants(fileobj, keywords, comment_tags, options):
    source = fileobj.read()
    found = list(extract_python(BytesIO(source), keywords, comment_tags, options))
    constants, dict_keys = _names(options, "constants"), _names(options, "dict_keys")
    if constants or dict_keys:
        tree = ast.parse(source)
        extra = [*_constant_messages(tree, constants), *_dict_value_messages(tree, dict_keys)]
        # funcname "" means "no keyword spec": the single message is taken as is.
        found += [(lineno, "", text, comments) for lineno, text, comments in extra]
    found.sort(key=lambda result: result[0] or 0)
    return found
