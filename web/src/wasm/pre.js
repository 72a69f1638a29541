// Prepended to vireo-web.js (--pre-js). Instantiates the module itself so that the two GPU imports that wait on
// promises (pipeline creation, reading a buffer back) become suspending imports and the exports that may reach
// them become promise-returning ones: JavaScript Promise Integration (WebAssembly.Suspending / promising).
// Without JSPI the module still runs on the CPU (the worker then does not offer WebGPU). Linked with
// -lexports.js, which keeps import and export names unminified.
Module['instantiateWasm'] = function(imports, done) {
  var env = imports['env'];
  if (!env) throw new Error('vireo-web: unexpected import object (minified names?)');
  var jspi = typeof WebAssembly.Suspending === 'function' && typeof WebAssembly.promising === 'function';
  if (jspi) {
    ['vireo_gpu_create_pipeline', 'vireo_gpu_read'].forEach(function(name) {
      if (typeof env[name] !== 'function') throw new Error('vireo-web: import ' + name + ' not found');
      env[name] = new WebAssembly.Suspending(env[name]);
    });
  }
  var finish = function(result) {
    var ex = result.instance.exports;
    Module['vireoJspi'] = jspi;
    Module['vireoAsync'] = {};
    ['vireo_web_load', 'vireo_web_step'].forEach(function(name) {
      if (typeof ex[name] !== 'function') throw new Error('vireo-web: export ' + name + ' not found');
      Module['vireoAsync'][name] = jspi ? WebAssembly.promising(ex[name]) : ex[name];
    });
    done(result.instance, result.module);
  };
  var url = Module['wasmUrl'] || wasmBinaryFile;
  var fail = function(e) {
    if (Module['onAbort']) Module['onAbort'](e);
    throw e;
  };
  if (WebAssembly.instantiateStreaming) {
    WebAssembly.instantiateStreaming(fetch(url, {credentials: 'same-origin'}), imports).then(finish, fail);
  } else {
    fetch(url, {credentials: 'same-origin'}).then(function(r) { return r.arrayBuffer(); })
        .then(function(b) { return WebAssembly.instantiate(b, imports); }).then(finish, fail);
  }
  return {};
};
