/* A stand-in libedgetpu.so.1 for tests: the entry points the runtime uses, no TPU.
 *
 * - TFLite external-delegate plugin (what LiteRT's load_delegate calls):
 *   tflite_plugin_create_delegate / tflite_plugin_destroy_delegate, with libedgetpu's
 *   "device" option ("", ":N", "usb", "usb:N", "pci", "pci:N"); like the real plugin it
 *   returns NULL without a message when no listed device matches.
 * - libedgetpu's C API (edgetpu_c.h): edgetpu_list_devices, edgetpu_free_devices,
 *   edgetpu_version.
 * Devices are listed by the environment: STANDIN_EDGETPU_DEVICES="usb:/sys/bus/usb/2-1,pci:/dev/apex_0".
 * The delegate claims every `edgetpu-custom-op` node and fills its outputs with zeros.
 * Variants (compile-time): -DCRASH_AT_CREATE, -DCRASH_AT_INVOKE (a segfault, as a
 * libedgetpu built against another TFLite does), -DREFUSE (devices listed, delegate refused).
 * Faults at run time, as a USB Coral that stops (frigate#7764, #6623): STANDIN_EDGETPU_FAULT=
 * hang (the invoke never returns) | error (it fails: libedgetpu's "USB transfer error", a
 * kTfLiteError LiteRT raises as RuntimeError) | crash (SIGSEGV), at invoke number
 * STANDIN_EDGETPU_FAULT_AT (1-based, default 1), for STANDIN_EDGETPU_FAULT_COUNT invokes in a
 * row (default 1; a large count is a device that never comes back). The invokes are counted
 * in the file STANDIN_EDGETPU_COUNTER when set, so a rebuilt interpreter in a new process
 * continues the count.
 * Structs below are TFLite's C ABI (tensorflow/lite/core/c/common.h), leading fields only.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

typedef struct { int size; int data[]; } TfLiteIntArray;
typedef struct { int type; void *data; TfLiteIntArray *dims; float scale; int32_t zero_point;
                 int allocation_type; size_t bytes; } TfLiteTensorHead;
typedef struct { TfLiteIntArray *inputs; TfLiteIntArray *outputs; } TfLiteNodeHead;
typedef struct {
  void *(*init)(void *, const char *, size_t);
  void (*free)(void *, void *);
  int (*prepare)(void *, void *);
  int (*invoke)(void *, void *);
  const char *(*profiling_string)(void *, void *);
  int32_t builtin_code;
  const char *custom_name;
  int version;
  char reserved[256];  /* later fields, zero: passed by value, so room for newer layouts */
} TfLiteRegistration;
struct TfLiteDelegate;
typedef struct TfLiteContext {
  size_t tensors_size;
  int (*GetExecutionPlan)(struct TfLiteContext *, TfLiteIntArray **);
  TfLiteTensorHead *tensors;  /* stride below is sizeof(TfLiteTensor), not this head */
  void *impl_;
  void *ResizeTensor;
  void (*ReportError)(struct TfLiteContext *, const char *, ...);
  void *AddTensors;
  int (*GetNodeAndRegistration)(struct TfLiteContext *, int, TfLiteNodeHead **,
                                TfLiteRegistration **);
  int (*ReplaceNodeSubsetsWithDelegateKernels)(struct TfLiteContext *, TfLiteRegistration,
                                               const TfLiteIntArray *, struct TfLiteDelegate *);
} TfLiteContext;
typedef struct TfLiteDelegate {
  void *data_;
  int (*Prepare)(TfLiteContext *, struct TfLiteDelegate *);
  void *CopyFromBufferHandle, *CopyToBufferHandle, *FreeBufferHandle;
  int64_t flags;
  void *reserved[8];
} TfLiteDelegate;

enum edgetpu_device_type { EDGETPU_APEX_PCI = 0, EDGETPU_APEX_USB = 1 };
struct edgetpu_device { enum edgetpu_device_type type; const char *path; };

#ifndef TENSOR_SIZE
#define TENSOR_SIZE 112 /* sizeof(TfLiteTensor) in the LiteRT the tests run */
#endif

/* A real invalid write (SIGSEGV), through a pointer the compiler cannot see is null. */
static void crash(void) {
  volatile int *p = (volatile int *)(uintptr_t)strtoul("0", NULL, 10);
  *p = 1;
}

const char *edgetpu_version(void) {
  return "BuildLabel(COMPILER=stand-in,DATE=redacted,TIME=redacted), RuntimeVersion(14)";
}

static size_t parse_devices(struct edgetpu_device *out, size_t cap) {
  const char *env = getenv("STANDIN_EDGETPU_DEVICES");
  size_t n = 0;
  if (!env) return 0;
  char *copy = strdup(env), *save = NULL;
  for (char *item = strtok_r(copy, ",", &save); item && n < cap;
       item = strtok_r(NULL, ",", &save)) {
    if (!strncmp(item, "usb:", 4)) { if (out) { out[n].type = EDGETPU_APEX_USB; out[n].path = strdup(item + 4); } n++; }
    else if (!strncmp(item, "pci:", 4)) { if (out) { out[n].type = EDGETPU_APEX_PCI; out[n].path = strdup(item + 4); } n++; }
  }
  free(copy);
  return n;
}

struct edgetpu_device *edgetpu_list_devices(size_t *num_devices) {
  struct edgetpu_device *list = calloc(16, sizeof *list);
  *num_devices = parse_devices(list, 16);
  return list;
}

void edgetpu_free_devices(struct edgetpu_device *dev) {
  if (!dev) return;
  for (int i = 0; i < 16 && dev[i].path; i++) free((void *)dev[i].path);
  free(dev);
}

/* libedgetpu's device option: "" any, ":N" Nth of any type, "usb"/"pci" any of a type,
 * "usb:N"/"pci:N" Nth of a type (enumeration order). */
static int device_matches(const char *option) {
  struct edgetpu_device list[16];
  memset(list, 0, sizeof list);
  size_t n = parse_devices(list, 16);
  int want_type = -1, index = -1, ok = 0;
  if (option == NULL || !*option) { ok = n > 0; goto done; }
  const char *colon = strchr(option, ':');
  size_t head = colon ? (size_t)(colon - option) : strlen(option);
  if (head == 3 && !strncmp(option, "usb", 3)) want_type = EDGETPU_APEX_USB;
  else if (head == 3 && !strncmp(option, "pci", 3)) want_type = EDGETPU_APEX_PCI;
  else if (head != 0) goto done;
  if (colon) {
    char *end;
    long v = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || v < 0) goto done;
    index = (int)v;
  } else if (want_type < 0) goto done;
  int seen = 0;
  for (size_t i = 0; i < n; i++) {
    if (want_type >= 0 && (int)list[i].type != want_type) continue;
    if (index < 0 || seen == index) { ok = 1; break; }
    seen++;
  }
done:
  for (size_t i = 0; i < n; i++) free((void *)list[i].path);
  return ok;
}

static long env_long(const char *name, long fallback) {
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : fallback;
}

/* This invoke's number, 1-based: counted in STANDIN_EDGETPU_COUNTER (locked, so across
 * processes) or, without it, in this process. */
static long next_invoke(void) {
  static long in_process = 0;
  const char *path = getenv("STANDIN_EDGETPU_COUNTER");
  if (!path || !*path) return ++in_process;
  int fd = open(path, O_RDWR | O_CREAT, 0600);
  if (fd < 0) return ++in_process;
  flock(fd, LOCK_EX);
  char buf[32] = {0};
  ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
  long n = (got > 0 ? strtol(buf, NULL, 10) : 0) + 1;
  int len = snprintf(buf, sizeof buf, "%ld\n", n);
  if (ftruncate(fd, 0) == 0 && pwrite(fd, buf, (size_t)len, 0) != len) n = -n;
  flock(fd, LOCK_UN);
  close(fd);
  return n < 0 ? -n : n;
}

/* The run-time fault asked for at this invoke: 0 (none) or kTfLiteError (1); a hang or a
 * crash does not return. */
static int fault(void) {
  const char *kind = getenv("STANDIN_EDGETPU_FAULT");
  if (!kind || !*kind) return 0;
  long n = next_invoke(), at = env_long("STANDIN_EDGETPU_FAULT_AT", 1);
  if (n < at || n >= at + env_long("STANDIN_EDGETPU_FAULT_COUNT", 1)) return 0;
  if (!strcmp(kind, "hang")) for (;;) pause();
  if (!strcmp(kind, "crash")) crash();
  return 1;
}

static int kernel_invoke(void *ctx, void *node) {
#ifdef CRASH_AT_INVOKE
  crash();
#endif
  if (fault()) return 1;
  TfLiteContext *context = ctx;
  TfLiteIntArray *outs = ((TfLiteNodeHead *)node)->outputs;
  for (int i = 0; i < outs->size; i++) {
    TfLiteTensorHead *t = (TfLiteTensorHead *)((char *)context->tensors + (size_t)outs->data[i] * TENSOR_SIZE);
    if (t->data) memset(t->data, 0, t->bytes);
  }
  return 0;
}

static int delegate_prepare(TfLiteContext *context, TfLiteDelegate *delegate) {
  TfLiteIntArray *plan;
  if (context->GetExecutionPlan(context, &plan) != 0) return 1;
  TfLiteIntArray *claim = malloc(sizeof(int) * (plan->size + 1));
  claim->size = 0;
  for (int i = 0; i < plan->size; i++) {
    TfLiteNodeHead *node;
    TfLiteRegistration *reg;
    if (context->GetNodeAndRegistration(context, plan->data[i], &node, &reg) != 0) continue;
    if (reg->custom_name && !strcmp(reg->custom_name, "edgetpu-custom-op"))
      claim->data[claim->size++] = plan->data[i];
  }
  TfLiteRegistration kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.invoke = kernel_invoke;
  kernel.custom_name = "EdgeTpuDelegateForCustomOp";
  kernel.version = 1;
  int status = 0;
  for (int i = 0; i < claim->size && status == 0; i++) {
    TfLiteIntArray one = {1};
    TfLiteIntArray *single = malloc(sizeof(int) * 2);
    single->size = 1;
    single->data[0] = claim->data[i];
    (void)one;
    status = context->ReplaceNodeSubsetsWithDelegateKernels(context, kernel, single, delegate);
    free(single);
  }
  free(claim);
  return status;
}

TfLiteDelegate *tflite_plugin_create_delegate(char **keys, char **values, size_t n,
                                              void (*report_error)(const char *)) {
  (void)report_error;
#ifdef CRASH_AT_CREATE
  crash();
#endif
  const char *device = NULL;
  for (size_t i = 0; i < n; i++)
    if (!strcmp(keys[i], "device")) device = values[i];
  if (!device_matches(device)) return NULL;
#ifdef REFUSE
  return NULL;
#endif
  TfLiteDelegate *d = calloc(1, sizeof *d);
  d->Prepare = delegate_prepare;
  d->flags = 1; /* kTfLiteDelegateFlagsAllowDynamicTensors: else TFLite prepares the
                   unresolved edgetpu-custom-op before the delegate can claim it */
  return d;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate *delegate) { free(delegate); }
