# snix-mount: the read-only FUSE view of the store (the overlay's lowerdir).
{ config, lib, pkgs, ... }:
let
  cfg = config.services.snix.mount;
  top = config.services.snix;
  opts = import ./options.nix { inherit lib top; };
  store = config.services.snix.store;
  inherit (lib) mkOption mkEnableOption mkIf types escapeShellArgs optional optionals;
  storeAddrs = import ./store-addrs.nix { inherit lib store; };
  # the mount point as one shell (and ExecStart) word
  mountPointArg = lib.escapeShellArg cfg.mountPoint;
in
{
  options.services.snix.mount = {
    enable = mkEnableOption "the snix FUSE mount";
    package = opts.package "snix-mount";
    mountPoint = mkOption {
      type = types.str;
      default = "/var/lib/snix-mount/store";
      description = "Where the store paths appear.";
    };
    listRoot = mkOption {
      type = types.bool;
      default = true;
      description = ''
        List the mount's root (every store path, referrers first). An overlay
        over the mount then lists the lower layer, as Nix's garbage collector
        on the local-overlay store needs; off, a listing reads nothing.
      '';
    };
    allowOther = mkOption {
      type = types.bool;
      default = true;
      description = "Let other users (Nix's builders, the overlay) read the mount.";
    };
    threads = mkOption {
      type = types.ints.positive;
      default = 16;
      description = "FUSE worker threads.";
    };
    cacheSize = mkOption {
      type = types.nullOr (types.either types.ints.unsigned (types.strMatching "[0-9]+[KMGT]?"));
      default = null;
      example = "20G";
      description = ''
        Bound of the local content cache (/var/cache/snix-mount): whole
        copies of files read, so later reads come from local disk. Bytes, or
        with a K/M/G/T suffix; 0 turns the cache off. null: 10% of that file
        system's free space at start-up.
      '';
    };
    passthrough = mkOption {
      type = types.enum [ "auto" "never" ];
      default = "auto";
      description = ''
        Let the kernel read cached files itself (FUSE passthrough, Linux 6.9
        or later). "never" serves every read from the snix-mount process.
      '';
    };
    extraArgs = opts.extraArgs "snix-mount";
  };

  config = mkIf cfg.enable {
    systemd.services.snix-mount = {
      description = "snix FUSE mount at ${cfg.mountPoint}";
      wantedBy = [ "multi-user.target" ];
      wants = optional store.enable "snix-store.socket";
      after = optional store.enable "snix-store.socket";
      environment = storeAddrs;
      # umount (util-linux) for preStart: a NixOS unit's PATH holds only
      # coreutils, findutils, grep, sed and systemd besides `path`
      path = [ pkgs.util-linux ];
      preStart = ''
        # a mount left by a killed instance: listing it says "Transport
        # endpoint is not connected" (a stat may still be answered from
        # attributes the kernel kept); clear it, or fail here, visibly
        if LC_ALL=C ls ${mountPointArg} 2>&1 >/dev/null | grep -q 'not connected'; then
          umount -l ${mountPointArg}
        fi
        mkdir -p ${mountPointArg}
      '';
      serviceConfig = {
        Type = "notify";
        ExecStart = "${cfg.package}/bin/snix-mount ${mountPointArg} --threads ${toString cfg.threads} "
          + escapeShellArgs ((if cfg.listRoot then [ "--list-root" ] else [ "--no-list-root" ]) ++ optionals cfg.allowOther [ "--allow-other" ]
            # (the default, auto, is not spelled out: a previous release
            # without the flag runs this unit too, in a rolling downgrade)
            ++ optionals (cfg.passthrough != "auto") [ "--passthrough" cfg.passthrough ]
            ++ optionals (cfg.cacheSize != null) [ "--cache-size" (toString cfg.cacheSize) ]
            ++ cfg.extraArgs);
        # the content cache ($CACHE_DIRECTORY); only this unit reads it
        CacheDirectory = "snix-mount";
        CacheDirectoryMode = "0700";
        Restart = "on-failure";
        # mounting needs /dev/fuse and CAP_SYS_ADMIN; nothing else. No file
        # system namespacing (PrivateTmp, Protect{Home,System,KernelModules,
        # ControlGroups}, …): the unit would get its own mount namespace and
        # its FUSE mount would never reach the host, nor the overlay.
        DeviceAllow = [ "/dev/fuse rw" ];
        NoNewPrivileges = true;
        RestrictRealtime = true;
        LockPersonality = true;
        RestrictAddressFamilies = [ "AF_UNIX" ];
        CapabilityBoundingSet = [ "CAP_SYS_ADMIN" ];
      };
    };
  };
}
