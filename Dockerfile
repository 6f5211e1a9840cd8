# hoody-mount serving the container profile (root "/", SSH on :22, state in /hoody/storage/files).
FROM python:3.11-slim

WORKDIR /opt/hoody-mount
COPY pyproject.toml README.md constraints.txt ./
COPY hoody_mount ./hoody_mount
COPY config/container.toml /etc/hoody-mount/container.toml
# openssh-client, rsync and git: scp -O, rsync and git over ssh run the OS's programs
# for users with a shell (root in this profile)
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-client rsync git \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir -c constraints.txt . \
    && mkdir -p /hoody/storage/files /hoody/storage/logs \
    && chmod 700 /hoody/storage/files \
    && chmod 644 /etc/hoody-mount/container.toml

# 22: SSH, SFTP and scp; 8080: WebDAV under /dav/ and the file API under /api/v1/files/
EXPOSE 22 8080
# host key, password hash, tokens, locks and logs survive a new container
VOLUME ["/hoody/storage"]
# asks /healthz on the configured listener, over HTTPS when it serves TLS
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD ["hoody-mount", "health", "--config", "/etc/hoody-mount/container.toml"]
# SIGTERM drains: transfers in flight get shutdown_grace (30 s) before they are cut.
# docker stop sends SIGKILL after 10 s unless told otherwise: docker stop -t 45, or
# stop_grace_period: 45s in compose (SIGHUP, docker kill -s HUP, reloads the users).
STOPSIGNAL SIGTERM
ENTRYPOINT ["hoody-mount", "serve", "--config", "/etc/hoody-mount/container.toml"]
