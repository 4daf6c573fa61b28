"""The OpenAPI document: the API's conventions in its description, and errors documented as they are sent."""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi.spec import Components, OpenAPIMediaType, OpenAPIResponse, Reference, Schema
from litestar.openapi.spec.enums import OpenAPIType

from api.paging import PAGING_DOC
from api.problems import PROBLEM_JSON

DESCRIPTION = f"""Vehicle twins, history, alerts, commands and fleet jobs over MQTT and HTTP.

- Errors are RFC 9457 problem documents (`{PROBLEM_JSON}`); `reason` holds a stable code where one helps.
- Times are RFC 3339 UTC in every response; queries and bodies take RFC 3339 or epoch seconds.
- {PAGING_DOC}
- A field without a value is left out of a response, never `null`.
"""

_STRING = Schema(type=OpenAPIType.STRING)
PROBLEM_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["type", "title", "status", "detail"],
    properties={
        "type": Schema(type=OpenAPIType.STRING, description="A URI naming the kind of problem"),
        "title": _STRING,
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING, description="What was wrong and how to fix it"),
        "instance": Schema(type=OpenAPIType.STRING, description="The request path"),
        "reason": Schema(type=OpenAPIType.STRING, description="A stable code, e.g. bad_query, bad_cursor, too_deep"),
        "current_version": Schema(type=OpenAPIType.INTEGER, description="On a version conflict: the twin's version"),
        "errors": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.OBJECT), description="Per field"),
    },
    description="An RFC 9457 problem document",
)


def document_problems(app: Litestar) -> None:
    """Every operation's errors as problem documents: Litestar's own 400 entry replaced, a 4XX range added."""
    schema = app.openapi_schema
    if schema.components is None:
        schema.components = Components()
    if schema.components.schemas is None:
        schema.components.schemas = {}
    schema.components.schemas["Problem"] = PROBLEM_SCHEMA
    problem = OpenAPIResponse(
        description="Refused: an RFC 9457 problem document",
        content={PROBLEM_JSON: OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Problem"))},
    )
    for item in (schema.paths or {}).values():
        for operation in (item.get, item.put, item.post, item.delete, item.patch, item.head, item.options):
            if operation is None:
                continue
            responses = operation.responses if operation.responses is not None else {}
            responses.pop("400", None)
            # A 204 has no body; Litestar documents one for handlers that return Response[None].
            no_content = responses.get("204")
            if isinstance(no_content, OpenAPIResponse):
                no_content.content = None
            responses["4XX"] = problem
            operation.responses = responses
