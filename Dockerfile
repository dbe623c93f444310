# One image for every process of inventory-cache: api, worker, scheduler, migrate, warmup.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# Dependencies first, in a layer of their own, from pyproject.toml and the lock alone: a
# change to the code (or the README) does not reinstall them. requirements.lock pins the
# versions CI tested.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -c requirements.lock -r /tmp/requirements.txt
COPY README.md ./
COPY inventory_cache ./inventory_cache
COPY persistence ./persistence
COPY lua ./lua
RUN pip install --no-deps .
# A user of its own that owns /app, its working directory and home, so anything it
# writes there (a relative path in a setting, a cache) can be written.
RUN useradd --system --uid 10001 --home-dir /app inventory && chown -R inventory:inventory /app
USER inventory
EXPOSE 8000 9100
ENTRYPOINT ["inventory-cache"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
