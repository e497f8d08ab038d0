# The how-to as a module: an overlayfs whose lower layer is the snix FUSE
# mount and whose upper layer is a real directory, used by Nix's own daemon
# as a local-overlay store with our nix-daemon as its lower store; users
# talk to Nix's daemon (`store = daemon`).
#
# The merged store is mounted under `root` (not at /nix): store paths
# needed to boot stay on the plain disk.
{ config, lib, ... }:
let
  cfg = config.services.snix.localOverlay;
  mount = config.services.snix.mount;
  nixd = config.services.snix.nix-daemon;
  inherit (lib) mkOption mkEnableOption mkIf types;
  # percent-encode the lower store URL, which holds '?' and '='
  encode = s: builtins.replaceStrings [ "%" ":" "/" "?" "=" "&" ] [ "%25" "%3A" "%2F" "%3F" "%3D" "%26" ] s;
  lowerStore = "unix://${nixd.socket}?real=${mount.mountPoint}";
  storeUrl = "local-overlay://?root=${cfg.root}&lower-store=${encode lowerStore}&upper-layer=${cfg.upperLayer}"
    + lib.optionalString (!cfg.checkMount) "&check-mount=false";
in
{
  options.services.snix.localOverlay = {
    enable = mkEnableOption "a local-overlay Nix store on top of snix (needs Nix >= 2.22)";
    root = mkOption {
      type = types.str;
      default = "/var/lib/snix-overlay/merged";
      description = "Root of the merged store; the overlay is mounted at ROOT/nix/store.";
    };
    upperLayer = mkOption {
      type = types.str;
      default = "/var/lib/snix-overlay/upper/nix/store";
      description = "The overlay's upper layer: where new paths land.";
    };
    workDir = mkOption {
      type = types.str;
      default = "/var/lib/snix-overlay/work";
      description = "overlayfs work directory (same file system as upperLayer).";
    };
    checkMount = mkOption {
      type = types.bool;
      default = true;
      description = "Let Nix check the overlay is mounted as its URL says.";
    };
    storeUrl = mkOption {
      type = types.str;
      readOnly = true;
      default = storeUrl;
      description = "The resulting store URL (set as Nix's daemon's `store`).";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      { assertion = mount.enable && nixd.enable; message = "services.snix.localOverlay needs services.snix.mount and services.snix.nix-daemon"; }
    ];
    systemd.tmpfiles.rules = [
      "d ${cfg.upperLayer} 0755 root root -"
      "d ${cfg.workDir} 0700 root root -"
      "d ${cfg.root}/nix/store 0755 root root -"
    ];
    fileSystems."${cfg.root}/nix/store" = {
      device = "overlay";
      fsType = "overlay";
      options = [
        "lowerdir=${mount.mountPoint}"
        "upperdir=${cfg.upperLayer}"
        "workdir=${cfg.workDir}"
        "x-systemd.requires=snix-mount.service"
        "x-systemd.after=snix-mount.service"
        "nofail"
      ];
    };
    nix.settings = {
      experimental-features = [ "nix-command" "local-overlay-store" ];
      store = storeUrl;
    };
    # users go through Nix's daemon, which alone knows the overlay store
    environment.variables.NIX_REMOTE = "daemon";
    systemd.services.nix-daemon = {
      wants = [ "snix-nix-daemon.socket" ];
      after = [ "snix-nix-daemon.socket" ];
      unitConfig.RequiresMountsFor = [ "${cfg.root}/nix/store" ];
    };
  };
}
