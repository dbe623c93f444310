"""One router per area of SPEC §5, each `APIRouter(prefix=..., tags=[...])`."""
