# The harness image every docker-compose service runs: `harness serve SERVICE` for the mock
# OpenStack services, `locust -f loadtests/locustfile.py` for the load generators.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first (a layer that survives code edits), then the code.
COPY pyproject.toml README.md ./
RUN mkdir -p harness analysis loadtests \
    && touch harness/__init__.py analysis/__init__.py loadtests/__init__.py \
    && pip install . \
    && pip uninstall -y openstack-boot-harness
COPY harness ./harness
COPY analysis ./analysis
COPY loadtests ./loadtests
RUN pip install --no-deps . && mkdir -p /runs

# Not root: the services need no privilege (ports are above 1024).
RUN useradd --create-home --uid 10001 harness && chown harness /runs
USER harness
VOLUME ["/runs"]
EXPOSE 5000 8774 9292 9696 8776 8089
CMD ["harness", "--help"]
