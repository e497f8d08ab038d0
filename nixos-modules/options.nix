# Option constructors, and the unit skeleton, every component module shares.
{ lib, top }:
{
  # A socket-activated daemon `name`: its socket unit on `socket` (mode
  # `mode`), and its service, started by the socket, Type=notify, restarted
  # on failure. `service` adds to (or overrides) the service's definition.
  # Not stopped while a switch replaces it (stopIfChanged = false, as
  # nixpkgs' nix-daemon): the socket keeps taking connections meanwhile.
  socketActivated = { name, description, socket, mode ? "0660", service }: {
    systemd.sockets.${name} = {
      description = "${description} socket";
      wantedBy = [ "sockets.target" ];
      listenStreams = [ socket ];
      socketConfig.SocketMode = mode;
    };
    systemd.services.${name} = lib.mkMerge [
      {
        inherit description;
        requires = [ "${name}.socket" ];
        after = [ "${name}.socket" ];
        stopIfChanged = false;
        serviceConfig = (import ./hardening.nix) // {
          Type = "notify";
          Restart = "on-failure";
        };
      }
      service
    ];
  };

  # the component's package, defaulting to services.snix.package
  package = binary: lib.mkOption {
    type = lib.types.package;
    default = top.package;
    defaultText = lib.literalExpression "config.services.snix.package";
    description = "Package providing `${binary}`.";
  };

  extraArgs = command: lib.mkOption {
    type = lib.types.listOf lib.types.str;
    default = [ ];
    description = "Extra arguments to `${command}`.";
  };
}
