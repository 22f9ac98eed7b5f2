# A small non-root image running `idp serve`. Configure with IDP_* variables (see README).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app --create-home idp
COPY --from=build /install /usr/local
WORKDIR /app
USER idp
ENV IDP_ENV=production \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
# Run `idp migrate` once per release (a job or an init container), then start any number of these.
CMD ["idp", "serve", "--host", "0.0.0.0", "--port", "8000"]
