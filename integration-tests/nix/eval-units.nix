# Evaluates nixos-modules/ with nixpkgs' own module system (`lib.evalModules`
# from nixpkgs' lib, ../shared/nixpkgs-lib/lib on this machine) and our
# declarations of the NixOS options they use (nixos-options.nix, with
# NixOS's types), and prints what the tests start as systemd would: each
# service and socket unit, fileSystems, tmpfiles, nix.settings, the
# environment and the failed assertions.
#
#   nix-instantiate --eval --strict --json integration-tests/nix/eval-units.nix \
#     --arg nixpkgsLib /path/to/nixpkgs/lib \
#     --arg settings '{ services.snix.castore.enable = true; … }' \
#     --arg pkgs '{ coreutils = "/dir/with/bin"; … }'
#
# `settings` is a module (an attribute set of definitions, or a function of
# `{ pkgs, ... }`), or a list of them.
# `pkgs` names the packages the modules and NixOS's service PATH refer to,
# each a directory laid out like a package (bin/, sbin/): this machine has
# no nixpkgs, so the tests make them from Debian's packages.
{ nixpkgsLib, settings, pkgs ? { }, scriptDir ? "/run/unit-scripts" }:
let
  lib = import nixpkgsLib;

  # a directory as a package: what a derivation looks like to modules
  asPackage = name: dir: { type = "derivation"; inherit name; outPath = dir; outputs = [ "out" ]; };
  packages = lib.mapAttrs asPackage pkgs // lib.optionalAttrs (pkgs ? nix) {
    nixVersions.latest = asPackage "nix" pkgs.nix;
  };

  eval = lib.evalModules {
    modules = [
      ../../nixos-modules
      ./nixos-options.nix
      { _module.args.pkgs = packages; }
    ] ++ lib.toList settings;
  };
  config = eval.config;

  # NixOS puts these before a service's own `path` (systemd.nix), and makes
  # its PATH of their bin/ and sbin/ directories
  defaultPath = map (n: packages.${n}) [ "coreutils" "findutils" "gnugrep" "gnused" "systemd" ];
  servicePath = unit:
    let all = unit.path ++ defaultPath; in
    "${lib.makeBinPath all}:${lib.makeSearchPathOutput "bin" "sbin" all}";

  common = unit: {
    inherit (unit) description after before wants requires bindsTo partOf conflicts wantedBy requiredBy unitConfig;
  };
  service = unit: common unit // {
    inherit (unit) serviceConfig preStart script stopIfChanged restartIfChanged;
    path = map toString unit.path;
    environment = lib.filterAttrs (_: v: v != null) unit.environment // { PATH = servicePath unit; };
  };
  socket = unit: common unit // { inherit (unit) listenStreams listenDatagrams socketConfig; };
  enabled = lib.filterAttrs (_: u: u.enable);

  # ---- the unit files, as NixOS writes them (nixos/lib/systemd-lib.nix) ----

  # one `Key=value` line per value (a list: one per element), keys sorted
  section = attrs: lib.concatStrings (lib.concatMap
    (key: map (v: "${key}=${if v == true then "true" else if v == false then "false" else toString v}\n")
      (lib.toList attrs.${key}))
    (builtins.attrNames attrs));

  unitSection = unit: section (lib.filterAttrs (_: v: v != "" && v != [ ]) {
    Description = unit.description;
    Requires = toString unit.requires;
    Wants = toString unit.wants;
    After = toString unit.after;
    Before = toString unit.before;
    BindsTo = toString unit.bindsTo;
    PartOf = toString unit.partOf;
    Conflicts = toString unit.conflicts;
    Requisite = toString unit.requisite;
    Documentation = toString unit.documentation;
    OnFailure = toString unit.onFailure;
    OnSuccess = toString unit.onSuccess;
  } // unit.unitConfig);

  unitText = unit: lines:
    "[Unit]\n" + unitSection unit + "\n" + lines
    + lib.optionalString (unit.wantedBy != [ ]) "\n[Install]\nWantedBy=${toString unit.wantedBy}\n";

  # a script option as a program: `set -e`, then the text (writeShellScriptBin)
  scriptName = name: lib.replaceStrings [ "\\" "@" ] [ "-" "_" ] name;
  scriptPath = name: "${scriptDir}/unit-script-${scriptName name}/bin/${scriptName name}";
  scriptText = text: "#!${pkgs.runtimeShell or "/bin/bash"}\nset -e\n\n${text}\n";
  jobScripts = name: unit: lib.filterAttrs (_: v: v.text != "") {
    ExecStartPre = { name = "${name}-pre-start"; text = unit.preStart; list = true; };
    ExecStart = { name = "${name}-start"; text = unit.script; list = false; };
    ExecStartPost = { name = "${name}-post-start"; text = unit.postStart; list = true; };
    ExecStop = { name = "${name}-pre-stop"; text = unit.preStop; list = false; };
    ExecStopPost = { name = "${name}-post-stop"; text = unit.postStop; list = false; };
  };

  serviceText = name: unit:
    let
      svc = service unit;
      scripts = jobScripts name unit;
      exec = lib.mapAttrs (key: s: if s.list then [ (scriptPath s.name) ] else
        "${scriptPath s.name}${lib.optionalString (key == "ExecStart") " ${unit.scriptArgs}"}") scripts;
    in
    unitText unit (
      "[Service]\n"
      + lib.concatMapStrings (n: "Environment=${builtins.toJSON "${n}=${svc.environment.${n}}"}\n")
        (builtins.attrNames svc.environment)
      + (if unit.reloadIfChanged then "X-ReloadIfChanged=true\n"
         else lib.optionalString (!unit.restartIfChanged) "X-RestartIfChanged=false\n")
      + lib.optionalString (!unit.stopIfChanged) "X-StopIfChanged=false\n"
      + section (unit.serviceConfig // exec));

  socketText = unit: unitText unit (
    "[Socket]\n"
    + lib.concatMapStrings (s: "ListenStream=${s}\n") unit.listenStreams
    + lib.concatMapStrings (s: "ListenDatagram=${s}\n") unit.listenDatagrams
    + section unit.socketConfig);

  # nix.conf values: lists space-separated, booleans as words, null empty
  confValue = v:
    if builtins.isList v then lib.concatMapStringsSep " " confValue v
    else if v == true then "true" else if v == false then "false"
    else if v == null then "" else toString v;
  escapeFstab = lib.replaceStrings [ " " "\t" ] [ "\\040" "\\011" ];

  services = enabled config.systemd.services;
  sockets = enabled config.systemd.sockets;
in
{
  # unit files by name, and the scripts they run (by path under scriptDir)
  unitFiles = lib.mapAttrs' (n: u: lib.nameValuePair "${n}.service" (serviceText n u)) services
    // lib.mapAttrs' (n: u: lib.nameValuePair "${n}.socket" (socketText u)) sockets;
  scripts = lib.listToAttrs (lib.concatLists (lib.mapAttrsToList (n: u: lib.mapAttrsToList
    (_: s: lib.nameValuePair "unit-script-${scriptName s.name}/bin/${scriptName s.name}" (scriptText s.text))
    (jobScripts n u)) services));

  services = lib.mapAttrs (_: service) (enabled config.systemd.services);
  sockets = lib.mapAttrs (_: socket) (enabled config.systemd.sockets);
  fileSystems = lib.mapAttrs (_: fs: { inherit (fs) mountPoint device fsType options depends; }) config.fileSystems;
  tmpfiles = config.systemd.tmpfiles.rules;
  # the files NixOS writes from these: /etc/nix/nix.conf, /etc/fstab lines,
  # a tmpfiles.d file
  nixConf = lib.concatStrings (lib.mapAttrsToList (k: v: "${k} = ${confValue v}\n")
    (lib.filterAttrs (k: _: !(lib.hasPrefix "extra-" k)) config.nix.settings)
    ++ lib.mapAttrsToList (k: v: "${k} = ${confValue v}\n") (lib.filterAttrs (k: _: lib.hasPrefix "extra-" k) config.nix.settings));
  fstab = lib.concatStrings (lib.mapAttrsToList (_: fs:
    "${escapeFstab (if fs.device == null then "none" else fs.device)} ${escapeFstab fs.mountPoint} ${fs.fsType} ${escapeFstab (lib.concatStringsSep "," fs.options)} 0 0\n")
    (lib.filterAttrs (_: fs: fs.enable) config.fileSystems));
  tmpfilesConf = lib.concatMapStrings (r: r + "\n") config.systemd.tmpfiles.rules;
  nixSettings = config.nix.settings;
  environment = config.environment.variables;
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
}
