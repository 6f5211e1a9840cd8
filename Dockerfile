# hoody-mount serving the container profile (root "/", SSH on :22, state in /hoody/storage/files).
FROM python:3.11-slim

WORKDIR /opt/hoody-mount
COPY pyproject.toml README.md constraints.txt ./
COPY hoody_mount ./hoody_mount
COPY config/container.toml /etc/hoody-mount/container.toml
RUN pip install --no-cache-dir -c constraints.txt . \
    && mkdir -p /hoody/storage/files /hoody/storage/logs \
    && chmod 700 /hoody/storage/files

EXPOSE 22 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["hoody-mount", "serve", "--config", "/etc/hoody-mount/container.toml"]
