# Declarations of the NixOS options our modules read or set, with the types
# NixOS gives them (nixpkgs: nixos/lib/systemd-unit-options.nix,
# nixos/lib/systemd-types.nix, nixos/modules/system/boot/systemd.nix,
# nixos/modules/tasks/filesystems.nix, nixos/modules/config/nix.nix,
# nixos/modules/config/shells-environment.nix, nixos/modules/misc/assertions.nix,
# nixos/modules/system/boot/systemd/tmpfiles.nix), written here so that
# nixpkgs' own module system (`lib.evalModules`) checks our modules without
# the rest of NixOS. Only what our modules use is declared: anything else
# they set is an error, as it is on NixOS when the option does not exist.
{ lib, ... }:
let
  inherit (lib) mkOption types;

  # a systemd directive's value: atoms, or lists of them; definitions of a
  # directive merge by concatenation when one is a list, else must agree
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge = loc: defs:
      let defs' = lib.filterOverrides defs; in
      if lib.any (d: builtins.isList d.value) defs'
      then lib.concatMap (d: lib.toList d.value) defs'
      else lib.mergeEqualOption loc defs';
  };
  # [Service]'s Type= and Restart= take only what systemd knows
  checkService = defined:
    let
      # a definition may be wrapped by mkForce and the like: check its content
      config = lib.mapAttrs (_: v: if v._type or "" == "override" then v.content else v) defined;
      oneOf = key: allowed: !(config ? ${key}) || builtins.elem config.${key} allowed
        || builtins.trace "systemd: ${key}=${toString config.${key}} is none of ${toString allowed}" false;
    in
    oneOf "Type" [ "exec" "simple" "forking" "oneshot" "dbus" "notify" "notify-reload" "idle" ]
    && oneOf "Restart" [ "no" "on-success" "on-failure" "on-abnormal" "on-abort" "on-watchdog" "always" ];
  unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";
  units = mkOption { type = types.listOf unitNameType; default = [ ]; };

  # what every unit has ([Unit] and [Install])
  commonUnitOptions = suffix: name: {
    name = mkOption { type = types.str; default = "${name}.${suffix}"; };
    enable = mkOption { type = types.bool; default = true; };
    description = mkOption { type = types.singleLineStr; default = ""; };
    documentation = mkOption { type = types.listOf types.str; default = [ ]; };
    requires = units;
    wants = units;
    upholds = units;
    after = units;
    before = units;
    bindsTo = units;
    partOf = units;
    conflicts = units;
    requisite = units;
    onFailure = units;
    onSuccess = units;
    wantedBy = units;
    requiredBy = units;
    upheldBy = units;
    aliases = units;
    unitConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
    restartTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    reloadTriggers = mkOption { type = types.listOf unitOption; default = [ ]; };
    startLimitBurst = mkOption { type = types.int; };
    startLimitIntervalSec = mkOption { type = types.int; };
  };

  # what a service adds ([Service], its scripts, its PATH)
  serviceOptions = { name, config, ... }: {
    options = commonUnitOptions "service" name // {
      environment = mkOption {
        type = types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]));
        default = { };
      };
      path = mkOption {
        type = types.listOf (types.oneOf [ types.package types.str ]);
        default = [ ];
        description = "Packages whose bin/ and sbin/ are the unit's PATH, after coreutils, findutils, gnugrep, gnused and systemd.";
      };
      serviceConfig = mkOption { type = types.addCheck (types.attrsOf unitOption) checkService; default = { }; };
      script = mkOption { type = types.lines; default = ""; };
      scriptArgs = mkOption { type = types.str; default = ""; };
      preStart = mkOption { type = types.lines; default = ""; };
      postStart = mkOption { type = types.lines; default = ""; };
      preStop = mkOption { type = types.lines; default = ""; };
      postStop = mkOption { type = types.lines; default = ""; };
      reload = mkOption { type = types.lines; default = ""; };
      restartIfChanged = mkOption { type = types.bool; default = true; };
      reloadIfChanged = mkOption { type = types.bool; default = false; };
      stopIfChanged = mkOption { type = types.bool; default = true; };
      startAt = mkOption { type = with types; either str (listOf str); default = [ ]; };
    };
  };

  socketOptions = { name, ... }: {
    options = commonUnitOptions "socket" name // {
      listenStreams = mkOption { type = types.listOf types.str; default = [ ]; };
      listenDatagrams = mkOption { type = types.listOf types.str; default = [ ]; };
      socketConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
    };
  };

  nonEmptyWithoutTrailingSlash = types.addCheck types.nonEmptyStr (s: s == "/" || !(lib.hasSuffix "/" s));
  fileSystemOptions = { name, ... }: {
    options = {
      enable = mkOption { type = types.bool; default = true; };
      mountPoint = mkOption { type = nonEmptyWithoutTrailingSlash; default = name; };
      device = mkOption { type = types.nullOr types.nonEmptyStr; default = null; };
      fsType = mkOption { type = types.nonEmptyStr; default = "auto"; };
      options = mkOption { type = types.nonEmptyListOf types.nonEmptyStr; default = [ "defaults" ]; };
      depends = mkOption { type = types.listOf nonEmptyWithoutTrailingSlash; default = [ ]; };
      neededForBoot = mkOption { type = types.bool; default = false; };
      noCheck = mkOption { type = types.bool; default = false; };
    };
  };

  # nix.conf values: atoms, or lists of them
  nixConfAtom = with types; nullOr (oneOf [ bool int float str path package ]);
  nixConfValue = with types; either nixConfAtom (listOf nixConfAtom);
in
{
  options = {
    assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; internal = true; };
    warnings = mkOption { type = types.listOf types.str; default = [ ]; internal = true; };

    systemd.services = mkOption { type = types.attrsOf (types.submodule serviceOptions); default = { }; };
    systemd.sockets = mkOption { type = types.attrsOf (types.submodule socketOptions); default = { }; };
    systemd.tmpfiles.rules = mkOption { type = types.listOf types.str; default = [ ]; };

    fileSystems = mkOption { type = types.attrsOf (types.submodule fileSystemOptions); default = { }; };

    nix.package = mkOption { type = types.package; };
    nix.settings = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf nixConfValue;
        # (store and experimental-features are not declared: free-form)
        options = {
          trusted-users = mkOption { type = types.listOf types.str; };
          allowed-users = mkOption { type = types.listOf types.str; default = [ "*" ]; };
          require-sigs = mkOption { type = types.bool; default = true; };
          substituters = mkOption { type = types.listOf types.str; };
          trusted-public-keys = mkOption { type = types.listOf types.str; };
        };
      };
      default = { };
    };

    environment.variables = mkOption {
      type = with types; attrsOf (nullOr (oneOf [ (listOf (oneOf [ int str path ])) int str path ]));
      default = { };
      apply = vars: lib.mapAttrs (_: v: if builtins.isList v then lib.concatMapStringsSep ":" toString v else toString v)
        (lib.filterAttrs (_: v: v != null) vars);
    };
  };

  # what NixOS's nix module defines itself
  config.nix.settings = {
    trusted-users = [ "root" ];
    substituters = lib.mkAfter [ "https://cache.nixos.org/" ];
    trusted-public-keys = [ "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ];
  };
}
