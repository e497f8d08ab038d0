# snix-castore daemon: blobs and directories, on a socket-activated unix socket.
{ config, lib, ... }:
let
  cfg = config.services.snix.castore;
  top = config.services.snix;
  opts = import ./options.nix { inherit lib top; };
  inherit (lib) mkOption mkEnableOption mkIf types escapeShellArgs;
in
{
  options.services.snix.castore = {
    enable = mkEnableOption "the snix castore daemon (BLAKE3 blobs and Merkle directories)";
    package = opts.package "snix-castore";
    socket = mkOption {
      type = types.str;
      default = "${top.runtimeDirectory}/snix-castore.sock";
      description = "Unix socket to listen on (systemd socket unit, mode 0660).";
    };
    blobServiceAddr = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "objectstore+file:///srv/snix/blobs";
      description = "Blob backend; default: objectstore+file under the state directory.";
    };
    directoryServiceAddr = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "sled:///srv/snix/directories";
      description = "Directory backend; default: sled under the state directory.";
    };
    extraArgs = opts.extraArgs "snix-castore daemon";
  };

  config = mkIf cfg.enable (opts.socketActivated {
    name = "snix-castore";
    description = "snix castore daemon";
    inherit (cfg) socket;
    service = {
      environment = lib.filterAttrs (_: v: v != null) {
        BLOB_SERVICE_ADDR = cfg.blobServiceAddr;
        DIRECTORY_SERVICE_ADDR = cfg.directoryServiceAddr;
      };
      serviceConfig = {
        ExecStart = "${cfg.package}/bin/snix-castore daemon ${escapeShellArgs cfg.extraArgs}";
        StateDirectory = "snix";
        StateDirectoryMode = "0700";
      };
    };
  });
}
