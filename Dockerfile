# hoody-mount serving the container profile (root "/", SSH on :22, state in /hoody/storage/files).
FROM python:3.11-slim

WORKDIR /opt/hoody-mount
COPY pyproject.toml README.md constraints.txt ./
COPY hoody_mount ./hoody_mount
COPY config/container.toml /etc/hoody-mount/container.toml
RUN pip install --no-cache-dir -c constraints.txt . \
    && mkdir -p /hoody/storage/files /hoody/storage/logs \
    && chmod 700 /hoody/storage/files

# 22: SSH, SFTP and scp; 8080: WebDAV under /dav/ and the file API under /api/v1/files/
EXPOSE 22 8080
# host key, password hash, tokens, locks and logs survive a new container
VOLUME ["/hoody/storage"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
# SIGTERM drains: transfers in flight get shutdown_grace (30 s) before they are cut.
# docker stop sends SIGKILL after 10 s unless told otherwise: docker stop -t 45, or
# stop_grace_period: 45s in compose (SIGHUP, docker kill -s HUP, reloads the users).
STOPSIGNAL SIGTERM
ENTRYPOINT ["hoody-mount", "serve", "--config", "/etc/hoody-mount/container.toml"]
