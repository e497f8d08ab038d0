# snix-store daemon: path infos (and, without the castore daemon, the castore
# services too), on a socket-activated unix socket.
{ config, lib, ... }:
let
  cfg = config.services.snix.store;
  top = config.services.snix;
  opts = import ./options.nix { inherit lib top; };
  castore = config.services.snix.castore;
  inherit (lib) mkOption mkEnableOption mkIf types escapeShellArgs optional;
in
{
  options.services.snix.store = {
    enable = mkEnableOption "the snix store daemon (path infos, NAR ingest and render)";
    package = opts.package "snix-store";
    socket = mkOption {
      type = types.str;
      default = "${top.runtimeDirectory}/snix-store.sock";
      description = "Unix socket to listen on; `snix-mount` and `nix-daemon` connect here by default.";
    };
    pathInfoServiceAddr = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "Path-info backend; default: sled under the state directory.";
    };
    extraArgs = opts.extraArgs "snix-store daemon";
  };

  config = mkIf cfg.enable (opts.socketActivated {
    name = "snix-store";
    description = "snix store daemon";
    inherit (cfg) socket;
    service = {
      # the castore is reached over its socket: a restart of either is survived
      wants = optional castore.enable "snix-castore.socket";
      after = optional castore.enable "snix-castore.socket";
      environment = lib.filterAttrs (_: v: v != null) {
        BLOB_SERVICE_ADDR = if castore.enable then "grpc+unix://${castore.socket}" else null;
        DIRECTORY_SERVICE_ADDR = if castore.enable then "grpc+unix://${castore.socket}" else null;
        PATH_INFO_SERVICE_ADDR = cfg.pathInfoServiceAddr;
      };
      serviceConfig = {
        ExecStart = "${cfg.package}/bin/snix-store daemon ${escapeShellArgs cfg.extraArgs}";
        StateDirectory = "snix";
        StateDirectoryMode = "0700";
      };
    };
  });
}
