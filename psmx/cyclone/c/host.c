// A Cyclone DDS 11 application, unmodified by the plugin: it publishes or
// subscribes on one topic, and whether the data goes through shmslot or UDP
// is decided by CYCLONEDDS_URI alone. The tests of the shmslot PSMX plugin
// run it as separate processes.
//
//   cyclone_host pub fixed|var COUNT SUBSCRIBERS
//   cyclone_host sub fixed|var COUNT [hold]
//
// pub: waits until SUBSCRIBERS readers match, writes COUNT reliable keep-all
//      samples (fixed: 1 KiB with loans; var: keyed, 16 B to 256 KiB), waits
//      for their acknowledgements and exits.
// sub: takes COUNT samples (fixed: as loans), checks order, uniqueness and
//      checksums, and prints one line:
//      "received N in_order N checksum_ok N loans_in_shm N" (in_order:
//      new sequence numbers, each above the last of its instance)
//
// sub hold: takes nothing until the publisher is gone (its reader cache keeps
//      every sample meanwhile), then as sub.
//
// Both print "ready" once matched, and report errors on stderr.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <inttypes.h>
#include "dds/dds.h"
#include "types.h"

#define DOMAIN DDS_DOMAIN_DEFAULT

static void die (const char *what, dds_return_t rc)
{
  fprintf (stderr, "cyclone_host: %s: %s\n", what, dds_strretcode (rc));
  exit (2);
}

static uint32_t checksum (uint32_t seq, const uint8_t *p, size_t n)
{
  uint32_t h = 2166136261u ^ seq;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 16777619u;
  return h;
}

static void fill (uint8_t *p, size_t n, uint32_t seq)
{
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t) (seq * 31u + i * 7u);
}

// Size of var sample `seq` of `count`: 16 B up to 256 KiB, growing.
static uint32_t var_size (uint32_t seq, uint32_t count)
{
  const uint64_t lo = 16, hi = 256 * 1024;
  return (uint32_t) (lo + (hi - lo) * seq / (count > 1 ? count - 1 : 1));
}

// Whether `p` lies in a mapping of a shmslot segment (/dev/shm/shmslot.*).
// The ranges are read from /proc/self/maps at most once per 1024 lookups
// that miss (a growing ring maps new segments).
#define MAX_RANGES 64
static uintptr_t range_lo[MAX_RANGES], range_hi[MAX_RANGES];
static int n_ranges = 0;
static uint32_t misses = 0;

static void read_ranges (void)
{
  FILE *f = fopen ("/proc/self/maps", "r");
  n_ranges = 0;
  if (f == NULL)
    return;
  char line[512];
  while (n_ranges < MAX_RANGES && fgets (line, sizeof line, f))
  {
    uintptr_t lo, hi;
    if (strstr (line, "/dev/shm/shmslot") && sscanf (line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2)
    {
      range_lo[n_ranges] = lo;
      range_hi[n_ranges++] = hi;
    }
  }
  fclose (f);
}

static int in_shm (const void *p)
{
  uintptr_t a = (uintptr_t) p;
  for (int pass = 0; pass < 2; pass++)
  {
    for (int i = 0; i < n_ranges; i++)
      if (a >= range_lo[i] && a < range_hi[i])
        return 1;
    if (pass == 0 && misses++ % 1024 == 0)
      read_ranges ();
    else
      break;
  }
  return 0;
}

static dds_qos_t *reliable_qos (void)
{
  dds_qos_t *qos = dds_create_qos ();
  dds_qset_reliability (qos, DDS_RELIABILITY_RELIABLE, DDS_SECS (10));
  dds_qset_history (qos, DDS_HISTORY_KEEP_ALL, 0);
  return qos;
}

static int publish (dds_entity_t pp, dds_entity_t tp, int fixed, uint32_t count, uint32_t subs)
{
  dds_qos_t *qos = reliable_qos ();
  dds_entity_t wr = dds_create_writer (pp, tp, qos, NULL);
  dds_delete_qos (qos);
  if (wr < 0)
    die ("create writer", wr);
  dds_publication_matched_status_t st;
  do {
    dds_sleepfor (DDS_MSECS (10));
    dds_get_publication_matched_status (wr, &st);
  } while (st.current_count < subs);
  printf ("ready\n");
  fflush (stdout);
  uint8_t *buf = malloc (256 * 1024 + 16);
  for (uint32_t seq = 0; seq < count; seq++)
  {
    dds_return_t rc;
    if (fixed)
    {
      void *loan = NULL;
      if ((rc = dds_request_loan (wr, &loan)) < 0)
        die ("request loan", rc);
      shmslot_test_Flat *s = loan;
      s->seq = seq;
      fill (s->data, sizeof s->data, seq);
      s->checksum = checksum (seq, s->data, sizeof s->data);
      rc = dds_write (wr, s);
    }
    else
    {
      uint32_t n = var_size (seq, count);
      fill (buf, n, seq);
      shmslot_test_Var s = { .id = seq % 7, .seq = seq, .checksum = checksum (seq, buf, n) };
      s.data._buffer = buf;
      s.data._length = s.data._maximum = n;
      s.data._release = false;
      rc = dds_write (wr, &s);
    }
    if (rc < 0)
      die ("write", rc);
  }
  dds_return_t rc = dds_wait_for_acks (wr, DDS_SECS (30));
  if (rc < 0)
    die ("wait for acks", rc);
  free (buf);
  return 0;
}

static int subscribe (dds_entity_t pp, dds_entity_t tp, int fixed, uint32_t count, int hold)
{
  dds_qos_t *qos = reliable_qos ();
  dds_entity_t rd = dds_create_reader (pp, tp, qos, NULL);
  dds_delete_qos (qos);
  if (rd < 0)
    die ("create reader", rd);
  dds_entity_t ws = dds_create_waitset (pp);
  dds_entity_t rc_ = dds_create_readcondition (rd, DDS_ANY_STATE);
  dds_waitset_attach (ws, rc_, 0);
  dds_subscription_matched_status_t st;
  do {
    dds_sleepfor (DDS_MSECS (10));
    dds_get_subscription_matched_status (rd, &st);
  } while (st.current_count < 1);
  printf ("ready\n");
  fflush (stdout);
  if (hold)
  {
    // Take nothing while the publisher is there.
    dds_time_t until = dds_time () + DDS_SECS (30);
    do {
      dds_sleepfor (DDS_MSECS (10));
      dds_get_subscription_matched_status (rd, &st);
    } while (st.current_count > 0 && dds_time () < until);
    printf ("publisher gone\n");
    fflush (stdout);
  }
  uint32_t received = 0, in_order = 0, ok = 0, shm = 0;
  // In order per instance (keyless: one instance), each sequence once.
  int64_t last[7] = { -1, -1, -1, -1, -1, -1, -1 };
  uint8_t *seen = calloc (count ? count : 1, 1);
  dds_time_t deadline = dds_time () + DDS_SECS (30);
  while (received < count && dds_time () < deadline)
  {
    dds_waitset_wait (ws, NULL, 0, DDS_MSECS (200));
    void *samples[16] = { NULL };
    dds_sample_info_t infos[16];
    int32_t n;
    while ((n = dds_take (rd, samples, infos, 16, 16)) > 0)
    {
      for (int32_t i = 0; i < n; i++)
      {
        if (!infos[i].valid_data)
          continue;
        uint32_t seq, inst = 0;
        if (fixed)
        {
          const shmslot_test_Flat *s = samples[i];
          seq = s->seq;
          ok += s->checksum == checksum (seq, s->data, sizeof s->data);
          shm += in_shm (s);
        }
        else
        {
          const shmslot_test_Var *s = samples[i];
          seq = s->seq;
          inst = s->id % 7;
          ok += s->checksum == checksum (seq, s->data._buffer, s->data._length) && s->data._length == var_size (seq, count) && s->id == seq % 7;
        }
        const int fresh = seq < count && !seen[seq];
        if (fresh)
          seen[seq] = 1;
        in_order += fresh && (int64_t) seq > last[inst];
        last[inst] = seq;
        received++;
      }
      dds_return_loan (rd, samples, n);
      memset (samples, 0, sizeof samples);
    }
  }
  free (seen);
  printf ("received %" PRIu32 " in_order %" PRIu32 " checksum_ok %" PRIu32 " loans_in_shm %" PRIu32 "\n", received, in_order, ok, shm);
  fflush (stdout);
  // Stay a moment: samples beyond COUNT (duplicates) would show up here.
  dds_sleepfor (DDS_MSECS (300));
  void *samples[1] = { NULL };
  dds_sample_info_t info;
  int32_t extra = 0, n;
  while ((n = dds_take (rd, samples, &info, 1, 1)) > 0)
  {
    extra += info.valid_data;
    dds_return_loan (rd, samples, n);
    samples[0] = NULL;
  }
  printf ("extra %" PRId32 "\n", extra);
  return received == count ? 0 : 1;
}

int main (int argc, char **argv)
{
  if (argc < 4 || (strcmp (argv[1], "pub") && strcmp (argv[1], "sub")) || (strcmp (argv[2], "fixed") && strcmp (argv[2], "var")))
  {
    fprintf (stderr, "usage: cyclone_host pub|sub fixed|var COUNT [SUBSCRIBERS|hold]\n");
    return 2;
  }
  const int fixed = strcmp (argv[2], "fixed") == 0;
  const uint32_t count = (uint32_t) strtoul (argv[3], NULL, 10);
  dds_entity_t pp = dds_create_participant (DOMAIN, NULL, NULL);
  if (pp < 0)
    die ("create participant", pp);
  const dds_topic_descriptor_t *desc = fixed ? &shmslot_test_Flat_desc : &shmslot_test_Var_desc;
  dds_entity_t tp = dds_create_topic (pp, desc, fixed ? "shmslot_fixed" : "shmslot_var", NULL, NULL);
  if (tp < 0)
    die ("create topic", tp);
  int r = argv[1][0] == 'p' ? publish (pp, tp, fixed, count, argc > 4 ? (uint32_t) strtoul (argv[4], NULL, 10) : 1) : subscribe (pp, tp, fixed, count, argc > 4 && strcmp (argv[4], "hold") == 0);
  dds_delete (pp);
  return r;
}
