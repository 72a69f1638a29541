// The browser side of src/backend/webgpu/gpu_device_browser.cpp: the few WebGPU calls the WASM engine makes,
// over the current WebGPU API (an Emscripten --js-library). GPU objects live in a table and are named by
// integer ids (0: none). Module.vireoGpu = {device, adapterInfo} is set before the engine opens the device
// (web/src/worker.js); vireo_gpu_create_pipeline and vireo_gpu_read return promises and are turned into
// suspending imports by pre.js (JavaScript Promise Integration), so the C++ caller simply waits.
mergeInto(LibraryManager.library, {
  $VGPU: {
    objects: [null],
    free: [],
    error: '',
    add: function(o) {
      var id = VGPU.free.length ? VGPU.free.pop() : VGPU.objects.length;
      VGPU.objects[id] = o;
      return id;
    },
    drop: function(id) {
      if (id > 0 && VGPU.objects[id]) {
        VGPU.objects[id] = null;
        VGPU.free.push(id);
      }
    },
    record: function(msg) {
      if (!VGPU.error) VGPU.error = String(msg);
    },
    device: function() {
      return Module['vireoGpu'] && Module['vireoGpu'].device;
    },
    usage: function(u) {
      var f = 0;
      if (u & 1) f |= GPUBufferUsage.STORAGE;
      if (u & 2) f |= GPUBufferUsage.UNIFORM;
      if (u & 4) f |= GPUBufferUsage.COPY_SRC;
      if (u & 8) f |= GPUBufferUsage.COPY_DST;
      if (u & 16) f |= GPUBufferUsage.MAP_READ;
      return f;
    },
  },

  vireo_gpu_open__deps: ['$VGPU'],
  vireo_gpu_open: function(maxBinding, maxBuffer, alignment, wgslFeatures) {
    var device = VGPU.device();
    if (!device) return 0;
    if (!device.__vireoWatched) {
      device.__vireoWatched = true;
      device.addEventListener('uncapturederror', function(e) { VGPU.record(e.error.message); });
      device.lost.then(function(info) {
        if (info.reason !== 'destroyed') VGPU.record('device lost: ' + info.message);
      });
    }
    HEAPF64[maxBinding >> 3] = device.limits.maxStorageBufferBindingSize;
    HEAPF64[maxBuffer >> 3] = device.limits.maxBufferSize;
    HEAPU32[alignment >> 2] = device.limits.minUniformBufferOffsetAlignment;
    var lang = navigator.gpu && navigator.gpu.wgslLanguageFeatures;
    // bit 0: dot4I8Packed in WGSL; bit 1: the device has subgroups; bit 2: shader-f16
    HEAPU32[wgslFeatures >> 2] = (lang && lang.has('packed_4x8_integer_dot_product') ? 1 : 0) |
                                 (device.features.has('subgroups') ? 2 : 0) | (device.features.has('shader-f16') ? 4 : 0);
    return 1;
  },

  vireo_gpu_adapter_info__deps: ['$VGPU'],
  vireo_gpu_adapter_info: function(out, cap) {
    var s = (Module['vireoGpu'] && Module['vireoGpu'].adapterInfo) || 'WebGPU';
    return stringToUTF8(s, out, cap);
  },

  vireo_gpu_create_buffer__deps: ['$VGPU'],
  vireo_gpu_create_buffer: function(size, usage, label) {
    try {
      var b = VGPU.device().createBuffer({size: size, usage: VGPU.usage(usage), label: UTF8ToString(label)});
      return VGPU.add(b);
    } catch (e) {
      VGPU.record(e.message || e);
      return 0;
    }
  },

  vireo_gpu_write_buffer__deps: ['$VGPU'],
  vireo_gpu_write_buffer: function(buf, offset, data, bytes) {
    VGPU.device().queue.writeBuffer(VGPU.objects[buf], offset, HEAPU8, data, bytes);
  },

  vireo_gpu_destroy_buffer__deps: ['$VGPU'],
  vireo_gpu_destroy_buffer: function(buf) {
    var b = VGPU.objects[buf];
    if (b) b.destroy();
    VGPU.drop(buf);
  },

  // Returns a promise (a suspending import; see pre.js).
  vireo_gpu_create_pipeline__deps: ['$VGPU'],
  vireo_gpu_create_pipeline: function(wgsl, len, entry) {
    var device = VGPU.device();
    var code = UTF8ToString(wgsl, len);
    var entryPoint = UTF8ToString(entry);
    var module = device.createShaderModule({code: code, label: entryPoint});
    return device.createComputePipelineAsync({layout: 'auto', compute: {module: module, entryPoint: entryPoint},
                                              label: entryPoint})
        .then(function(p) {
          return VGPU.add({pipeline: p, layout: p.getBindGroupLayout(0)});
        })
        .catch(function(e) {
          return module.getCompilationInfo().then(function(info) {
            var lines = info.messages.map(function(m) { return m.type + ' at line ' + m.lineNum + ': ' + m.message; });
            VGPU.record((e.message || e) + (lines.length ? '\n' + lines.join('\n') : ''));
            return 0;
          });
        });
  },

  vireo_gpu_destroy_pipeline__deps: ['$VGPU'],
  vireo_gpu_destroy_pipeline: function(p) { VGPU.drop(p); },

  vireo_gpu_create_bind_group__deps: ['$VGPU'],
  vireo_gpu_create_bind_group: function(pipeline, entries, n) {
    var list = [];
    for (var i = 0; i < n; ++i) {
      var w = (entries >> 2) + i * 8;
      list.push({binding: HEAPU32[w], resource: {buffer: VGPU.objects[HEAPU32[w + 2]],
                                                  offset: HEAPU32[w + 4] + HEAPU32[w + 5] * 4294967296,
                                                  size: HEAPU32[w + 6] + HEAPU32[w + 7] * 4294967296}});
    }
    try {
      return VGPU.add(VGPU.device().createBindGroup({layout: VGPU.objects[pipeline].layout, entries: list}));
    } catch (e) {
      VGPU.record(e.message || e);
      return 0;
    }
  },

  vireo_gpu_destroy_bind_group__deps: ['$VGPU'],
  vireo_gpu_destroy_bind_group: function(g) { VGPU.drop(g); },

  vireo_gpu_submit__deps: ['$VGPU'],
  vireo_gpu_submit: function(cmds, n, copySrc, copyDst, copyBytes) {
    var device = VGPU.device();
    var enc = device.createCommandEncoder();
    if (n > 0) {
      var pass = enc.beginComputePass();
      var last = 0;
      for (var i = 0; i < n; ++i) {
        var w = (cmds >> 2) + i * 8;
        var p = HEAPU32[w];
        if (p !== last) {
          pass.setPipeline(VGPU.objects[p].pipeline);
          last = p;
        }
        pass.setBindGroup(0, VGPU.objects[HEAPU32[w + 2]]);
        pass.dispatchWorkgroups(HEAPU32[w + 4], HEAPU32[w + 5], HEAPU32[w + 6]);
      }
      pass.end();
    }
    if (copyBytes > 0) enc.copyBufferToBuffer(VGPU.objects[copySrc], 0, VGPU.objects[copyDst], 0, copyBytes);
    device.queue.submit([enc.finish()]);
  },

  // Returns a promise of 1 (done) or 0 (failed; the error is recorded). A suspending import; see pre.js.
  vireo_gpu_read__deps: ['$VGPU'],
  vireo_gpu_read: function(buf, host, bytes) {
    var b = VGPU.objects[buf];
    var padded = Math.ceil(bytes / 4) * 4;
    return b.mapAsync(GPUMapMode.READ, 0, padded).then(function() {
      HEAPU8.set(new Uint8Array(b.getMappedRange(0, padded), 0, bytes), host);
      b.unmap();
      return 1;
    }, function(e) {
      VGPU.record(e.message || e);
      return 0;
    });
  },

  vireo_gpu_take_error__deps: ['$VGPU'],
  vireo_gpu_take_error: function(out, cap) {
    if (!VGPU.error) return 0;
    var n = stringToUTF8(VGPU.error, out, cap);
    VGPU.error = '';
    return n;
  },
});
