# The service addresses of the store daemon's socket, for its clients
# (snix-mount, nix-daemon): without them they look in /run/snix, which is
# wrong once services.snix.store.socket or runtimeDirectory is changed.
{ lib, store }:
lib.optionalAttrs store.enable (
  let addr = "grpc+unix://${store.socket}"; in {
    BLOB_SERVICE_ADDR = addr;
    DIRECTORY_SERVICE_ADDR = addr;
    PATH_INFO_SERVICE_ADDR = addr;
  }
)
