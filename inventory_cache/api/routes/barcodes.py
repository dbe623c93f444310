"""Barcodes → SKUs (`warehouse` to change, `read` to look up).

A code may be sent as EAN-8, UPC-A, EAN-13 or GTIN-14; it is validated (check digit) and
answered in its GTIN-14 form, the one it is stored under (see `barcodes.py`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from inventory_cache.api.deps import BarcodesDep, ReadKey, WarehouseKey
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.barcodes import BarcodeIn, BarcodeOut
from inventory_cache.barcodes import BarcodeMapping

router = APIRouter(prefix="/v1/barcodes", tags=["barcodes"])

Code = Annotated[
    str,
    Path(
        max_length=64,
        description="EAN-8, UPC-A, EAN-13 or GTIN-14, with its check digit",
        examples=["4006381333931"],
    ),
]


def _out(mapping: BarcodeMapping) -> dict[str, str]:
    return {"barcode": mapping.barcode, "sku": mapping.sku}


@router.put(
    "/{code}",
    response_model=BarcodeOut,
    responses=problem_responses(401, 403, 422, 503),
    summary="Map a barcode to a SKU (replaces an earlier mapping)",
)
async def put_barcode(
    code: Code, body: BarcodeIn, barcodes: BarcodesDep, _: WarehouseKey
) -> Response:
    return json_response(_out(await barcodes.put(code, body.sku)))


@router.get(
    "/{code}",
    response_model=BarcodeOut,
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="The SKU a barcode stands for",
)
async def get_barcode(code: Code, barcodes: BarcodesDep, _: ReadKey) -> Response:
    return json_response(_out(await barcodes.get(code)))


@router.delete(
    "/{code}",
    status_code=204,
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="Forget a barcode",
)
async def delete_barcode(code: Code, barcodes: BarcodesDep, _: WarehouseKey) -> Response:
    await barcodes.delete(code)
    return Response(status_code=204)
