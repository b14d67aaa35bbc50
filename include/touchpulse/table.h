/*
 * table.h -- the lock-free touchpoint table.
 *
 * An open-addressing hash table (linear probing, power-of-two capacity fixed
 * at creation) of intrusive nodes, in the manner of liburcu's cds_lfht: the
 * caller embeds a tp_table_node_t in its own entry and owns the entry's
 * memory. Writers insert with a compare-and-swap on the slot; readers look up
 * and iterate with plain acquire loads. Nothing here takes a lock.
 *
 * Capacity is a hard cap: the table never holds more than max_entries live
 * nodes and never resizes (a resize would stall every writer, and the cap is
 * what keeps memory bounded under a flood of new keys). Inserts beyond it
 * return TP_EFULL and are counted in tp_table_overflow().
 *
 * Removal leaves a tombstone in the slot, so probe sequences stay intact, and
 * tombstones are reused by later inserts. A removed node may still be in use
 * by a reader that found it before the removal: the owner hands it to
 * tp_table_retire() and it is freed only once every reader that could have
 * seen it has left its read section (epoch-based reclamation).
 *
 * Threads: any number of writers and readers. Readers (the HTTP server, the
 * demo view) bracket their use of nodes with tp_table_read_begin/end. Writers
 * that only look up and insert keys they own need no read section: nobody
 * else removes their nodes.
 */
#ifndef TOUCHPULSE_TABLE_H
#define TOUCHPULSE_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "touchpulse/common.h"

typedef struct tp_table_s tp_table_t;

/** Embedded in the caller's entry; immutable once inserted. */
typedef struct tp_table_node_s {
  uint64_t hash;   /* tp_hash64() of the key, set by the caller */
  const void *key; /* points into the caller's entry */
  uint32_t key_len;
} tp_table_node_t;

/**
 * @brief Create a table that holds at most max_entries nodes.
 * @returns the table, or NULL with a message in errstr.
 */
tp_table_t *tp_table_new(size_t max_entries, char *errstr, size_t errstr_size);

/** Free the table (not the nodes). NULL-safe. Runs every pending retire. */
void tp_table_destroy(tp_table_t *tbl);

/** Start fetching the slot a lookup of hash reads first (a hint). */
void tp_table_prefetch(const tp_table_t *tbl, uint64_t hash);

/** The first node with hash's tag on the probe path of hash, within the
 *  cache line of its first slot, else NULL, without comparing keys: for
 *  prefetching (it may be another key's). Loaded with acquire, so that its
 *  immutable fields (hash, key, key_len) may be read, with the guarantee
 *  tp_table_get() gives: a writer needs no read section for nodes nobody
 *  removes meanwhile. The rest of the node is the caller's only if the
 *  caller owns it. @thread any */
const tp_table_node_t *tp_table_peek(const tp_table_t *tbl, uint64_t hash);

/**
 * @brief Find the node with this key.
 * @returns the node (borrowed: valid until removed and reclaimed), or NULL.
 * @thread any
 */
tp_table_node_t *tp_table_get(const tp_table_t *tbl, uint64_t hash,
                              const void *key, size_t key_len);

/**
 * @brief Insert node. node->hash/key/key_len must be set.
 * @returns TP_OK; TP_EEXIST with *existing set when the key is present;
 *          TP_EFULL when the table holds max_entries nodes (counted).
 * @thread any
 */
tp_err_t tp_table_insert(tp_table_t *tbl, tp_table_node_t *node,
                         tp_table_node_t **existing);

/**
 * @brief Unlink node. The caller then owns it again but must not free it
 *        before readers are done: pass it to tp_table_retire().
 * @returns TP_OK, or TP_EINVAL when node is not in the table.
 */
tp_err_t tp_table_remove(tp_table_t *tbl, tp_table_node_t *node);

/** Free node with free_cb(node) once no reader can still hold it. Do not
 *  call it from inside a read section on the same table. */
void tp_table_retire(tp_table_t *tbl, tp_table_node_t *node,
                     void (*free_cb)(tp_table_node_t *node));

/** Free what can be freed now; called by writers from time to time. */
void tp_table_reclaim(tp_table_t *tbl);

/** Enter and leave a read section. Sections do not nest. @thread any */
void tp_table_read_begin(tp_table_t *tbl);
void tp_table_read_end(tp_table_t *tbl);

/**
 * @brief Call cb for every node present for the whole call (nodes inserted
 *        or removed meanwhile may or may not be seen). Stops early when cb
 *        returns non-zero. Call inside a read section.
 */
void tp_table_foreach(const tp_table_t *tbl,
                      int (*cb)(tp_table_node_t *node, void *opaque),
                      void *opaque);

size_t tp_table_size(const tp_table_t *tbl);       /* live nodes */
size_t tp_table_max_entries(const tp_table_t *tbl);
uint64_t tp_table_overflow(const tp_table_t *tbl); /* inserts refused: full */

#endif
