"""One router per area of the API, each `APIRouter(prefix=..., tags=[...])`."""
