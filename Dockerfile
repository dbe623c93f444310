# One image for every process of inventory-cache: api, worker, scheduler, migrate, warmup.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY inventory_cache ./inventory_cache
COPY persistence ./persistence
COPY lua ./lua
RUN pip install .
RUN useradd --system --uid 10001 inventory
USER inventory
EXPOSE 8000
ENTRYPOINT ["inventory-cache"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
