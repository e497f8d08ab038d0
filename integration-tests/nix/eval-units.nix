# Evaluates nixos-modules/ the way a NixOS system would, without nixpkgs
# (this machine has none): a small stand-in for nixpkgs' lib and module
# system, enough for our modules. Prints what the tests run as "systemd":
# the services and sockets, fileSystems, tmpfiles, nix.settings, the
# environment and the failed assertions.
#
#   nix-instantiate --eval --strict --json integration-tests/nix/eval-units.nix \
#     --arg settings '{ services.snix.castore.enable = true; … }'
#
# The module system's rules that matter here are kept: the shape of
# `config` comes from the option declarations (so `mkIf cfg.enable` can
# read config), definitions are merged per option (lists concatenated,
# attribute sets merged, mkDefault below plain definitions), an unset
# option takes its default, and an unknown option is an error.
{ settings }:
let
  inherit (builtins) attrNames concatLists concatMap filter foldl' head isAttrs isList length listToAttrs map
    mapAttrs replaceStrings tail;

  lib = rec {
    mkOption = o: o // { _type = "option"; };
    mkEnableOption = what: mkOption { default = false; description = "Whether to enable ${what}."; };
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkMerge = contents: { _type = "merge"; inherit contents; };
    mkOverride = priority: content: { _type = "override"; inherit priority content; };
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    types = let t = name: { inherit name; }; in {
      str = t "str";
      bool = t "bool";
      package = t "package";
      path = t "path";
      int = t "int";
      ints.positive = t "positive int";
      nullOr = e: t "null or ${e.name}";
      listOf = e: t "list of ${e.name}";
      attrsOf = e: t "attrs of ${e.name}";
      anything = t "anything";
    };
    optional = c: x: if c then [ x ] else [ ];
    optionals = c: xs: if c then xs else [ ];
    optionalString = c: s: if c then s else "";
    optionalAttrs = c: a: if c then a else { };
    concatStringsSep = builtins.concatStringsSep;
    boolToString = b: if b then "true" else "false";
    filterAttrs = pred: set: listToAttrs (concatMap (n: if pred n set.${n} then [ { name = n; value = set.${n}; } ] else [ ]) (attrNames set));
    escapeShellArg = a: "'${replaceStrings [ "'" ] [ "'\\''" ] (toString a)}'";
    escapeShellArgs = as: builtins.concatStringsSep " " (map escapeShellArg as);
  };

  # what mkOption, mkIf, mkMerge and mkOverride made
  is = type: x: isAttrs x && x ? _type && x._type == type;
  isOption = is "option";

  # NixOS options our modules define values for, declared loosely
  nixos = { lib, ... }: {
    options = {
      assertions = lib.mkOption { default = [ ]; };
      systemd.services = lib.mkOption { default = { }; };
      systemd.sockets = lib.mkOption { default = { }; };
      systemd.tmpfiles.rules = lib.mkOption { default = [ ]; };
      fileSystems = lib.mkOption { default = { }; };
      nix.settings = lib.mkOption { default = { }; };
      environment.variables = lib.mkOption { default = { }; };
    };
  };

  # modules, with their imports, called with the final config
  collect = m:
    let
      f = if builtins.isPath m || builtins.isString m then import m else m;
      r = if builtins.isFunction f then f { inherit config lib; pkgs = { }; } else f;
      shaped = if r ? options || r ? config || r ? imports then r else { config = r; };
    in
    [ shaped ] ++ concatMap collect (shaped.imports or [ ]);
  modules = collect ../../nixos-modules ++ collect nixos ++ [ { config = settings; } ];

  # declarations: one tree of options
  mergeDecls = a: b: a // mapAttrs (n: v: if a ? ${n} && !(isOption v) then mergeDecls a.${n} v else v) b;
  decls = foldl' mergeDecls { } (map (m: m.options or { }) modules);

  # the definitions found at `path` in one module's config, mkIf/mkMerge
  # pushed down; a condition is read only where its content defines `path`
  # (as in nixpkgs: `config = mkIf cfg.enable …` may read other options)
  defsAt = path: c:
    if is "if" c then
      (let inner = defsAt path c.content; in if length inner == 0 || !c.condition then [ ] else inner)
    else if is "merge" c then concatMap (defsAt path) c.contents
    else if path == [ ] then [ c ]
    else if isAttrs c && !(c ? _type) && c ? ${head path} then defsAt (tail path) c.${head path}
    else [ ];

  priority = d: if is "override" d then d.priority else 100;
  strip = d: if is "override" d then strip d.content else d;
  # lists concatenate, attribute sets merge per name, equal values agree
  mergeValues = path: a: b:
    if isList a && isList b then a ++ b
    else if isAttrs a && isAttrs b && !(a ? outPath) then
      a // mapAttrs (n: v: if a ? ${n} then mergeValues (path ++ [ n ]) a.${n} v else v) b
    else if a == b then a
    else throw "conflicting definitions of ${builtins.concatStringsSep "." path}";

  valueOf = path: opt:
    let
      defs = concatMap (m: defsAt path (m.config or { })) modules;
      best = foldl' (p: d: if priority d < p then priority d else p) 1500 defs;
      chosen = map strip (filter (d: priority d == best) defs);
    in
    if chosen == [ ] then (if opt ? default then opt.default else throw "option ${builtins.concatStringsSep "." path} is used but not set")
    else foldl' (mergeValues path) (head chosen) (tail chosen);

  build = path: tree: mapAttrs (n: v: if isOption v then valueOf (path ++ [ n ]) v else build (path ++ [ n ]) v) tree;
  config = build [ ] decls;

  # every definition must land on a declared option
  checkDefined = path: tree: c:
    if is "if" c then checkDefined path tree c.content
    else if is "merge" c then concatMap (checkDefined path tree) c.contents
    else if isOption tree then [ ]
    else if isAttrs c && !(c ? _type) then
      concatMap (n: if tree ? ${n} then checkDefined (path ++ [ n ]) tree.${n} c.${n} else [ (builtins.concatStringsSep "." (path ++ [ n ])) ]) (attrNames c)
    else [ ];
  unknown = concatMap (m: checkDefined [ ] decls (m.config or { })) modules;
in
if unknown != [ ] then throw "undeclared options: ${builtins.concatStringsSep ", " unknown}"
else {
  services = config.systemd.services;
  sockets = config.systemd.sockets;
  inherit (config) fileSystems;
  tmpfiles = config.systemd.tmpfiles.rules;
  nixSettings = config.nix.settings;
  environment = config.environment.variables;
  failedAssertions = map (a: a.message) (filter (a: !a.assertion) config.assertions);
}
