# syntax=docker/dockerfile:1
# The service's image: `docker build -t aidlc-auth .` (deploy/deploy.sh builds and pushes it to
# ECR at step 6; docker-compose.yml builds it for the local stack).

# Bookworm's glibc (2.36) is the runtime's (distroless cc-debian12): the binary links against
# nothing newer than the image has (deploy/checks/ldd.py holds the list).
FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The dependency recipe: it changes with Cargo.toml and Cargo.lock, not with the code.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# Dependencies in their own cached layer, then the service itself.
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --features aws --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --features aws --bin aidlc-auth

# glibc, libgcc and the CA roots (the AWS SDK's HTTPS trusts the system's; PostgreSQL's RDS
# bundle and the SMTP roots are compiled into the binary), no shell, run as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/aidlc-auth /usr/local/bin/aidlc-auth
# Writable by the service's user: only the emergency SQLite fallback writes here (data/).
WORKDIR /home/nonroot
# distroless "nonroot" (65532), by number so the runtime needs no passwd lookup.
USER 65532:65532
EXPOSE 8001
STOPSIGNAL SIGTERM
# The binary is its own probe (no curl in the image): GET /health on the local PORT.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/aidlc-auth", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/aidlc-auth"]
CMD ["serve"]
