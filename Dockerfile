# Production image: runtime dependencies only, non-root, gunicorn on 0.0.0.0:8000.
# It binds a public address, so give it AUTH_JWKS_URL or AUTH_JWT_SECRET (or AUTH_DISABLED=true behind an
# authenticating gateway): without one of them the service refuses to start.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8000

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt \
    && useradd --create-home --uid 10001 todo

COPY --chown=todo:todo todo_service/ todo_service/
COPY --chown=todo:todo sql/ sql/
COPY --chown=todo:todo wsgi.py gunicorn.conf.py ./

USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
